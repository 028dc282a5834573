"""RocksDB options shared by the gateway's two databases (readings in gateway/store, sessions and retained messages
in gateway/mqtt/persist.py), sized for a board with 512 MB of RAM that runs from an SD card."""

from __future__ import annotations

from rocksdict import Options


def board_options(*, write_buffer_bytes: int, max_open_files: int) -> Options:
    """The options both databases start from; each adds its own table options (block cache, filters)."""
    # RocksDB's defaults are sized for servers (64 MiB memtables, unbounded table cache, one background thread per
    # core): on a Pi Zero 2 W each memory consumer is set explicitly.
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(write_buffer_bytes)
    opts.set_max_write_buffer_number(2)
    opts.set_max_open_files(max_open_files)
    opts.set_max_background_jobs(1)
    # RocksDB's own LOG file lives beside the data, on the card: without these it gets a statistics dump every ten
    # minutes and grows until a restart (bench/sdwear.py measured ~0.6 MB a day of writes by an idle gateway).
    opts.set_stats_dump_period_sec(0)
    opts.set_max_log_file_size(1 << 20)
    opts.set_keep_log_file_num(2)
    return opts
