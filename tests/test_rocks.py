"""Both of a running gateway's RocksDB databases use the SD-card settings of gateway/rocks.py: RocksDB records the
options it opened a database with in that database's OPTIONS-* file, which is read here."""

from __future__ import annotations

import re

from tests.conftest import Gateway


def test_every_database_of_a_gateway_keeps_its_rocksdb_log_small(gateway: Gateway) -> None:
    gateway.stop()
    options_files = sorted(gateway.data_dir.rglob("OPTIONS-*"))
    databases = {path.parent for path in options_files}
    assert len(databases) >= 2, f"the readings' and the broker's databases: {sorted(databases)}"
    for database in databases:
        newest = max(database.glob("OPTIONS-*"), key=lambda path: int(path.name.split("-")[1]))
        options = dict(re.findall(r"^\s*(\w+)=(.*)$", newest.read_text(), flags=re.MULTILINE))
        assert options["stats_dump_period_sec"] == "0", database  # no statistics dump into LOG every 10 minutes
        assert options["max_log_file_size"] == str(1 << 20), database
        assert options["keep_log_file_num"] == "2", database
        assert options["max_background_jobs"] == "1", database
