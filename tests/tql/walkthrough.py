"""The TQL of machbase-neo's walk-through page, verbatim: what /db/tql must run unchanged."""

WALKTHROUGH = """
  SQL_SELECT("time", "value", from("example", "temperature"), between("last-60s", "last"))
  MAPVALUE(0, list(value(0), value(1)))
  POPVALUE(1)
  CHART(size("600px", "400px"), chartID('rspChart'), theme('dark'),
        chartOption({ xAxis:{ type: "time", axisLabel: { rotate: 30, interval:5 } }, yAxis:{ },
                      animation: true, series:[ { type:"line", data:column(0) } ] }))"""
