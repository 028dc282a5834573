# Runs one wake of a deep-sleeping node so that nothing can keep it awake: an exception is printed, and the node
# deep-sleeps and tries again at its next wake instead of draining the battery with the radio on.
import sys
import time

import machine


def run(main, interval_s, boot_delay_s):
    if machine.reset_cause() in (machine.PWRON_RESET, machine.HARD_RESET):
        time.sleep(boot_delay_s)  # a window for Ctrl-C before the first deep sleep
    try:
        main()
    except Exception as e:
        if hasattr(sys, "print_exception"):
            sys.print_exception(e)
        else:
            print(repr(e))
        time.sleep(1)  # a moment to break in from the REPL before the board is gone again
        machine.deepsleep(interval_s * 1000)
