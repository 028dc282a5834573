# mypy: ignore-errors
# (MicroPython code: it imports the board's /lib modules by their bare names, which mypy cannot follow here.)
# Runs the test_* functions of the test modules in /tests under MicroPython (tests/firmware/node/run.mjs), one line
# per test: "PASS module.function" or "FAIL module.function: error", then MicroPython's traceback.
import os
import sys

sys.path.append("/tests")
os.mkdir("/work")
os.chdir("/work")  # the store-and-forward tests write their files here

passed = failed = 0
for file in sorted(os.listdir("/tests")):
    if not (file.startswith("test_") and file.endswith(".py")):
        continue
    module_name = file[:-3]
    try:
        module = __import__(module_name)
    except Exception as e:  # reported, as any failure
        failed += 1
        print(f"FAIL {module_name}: import: {e!r}")
        sys.print_exception(e)
        continue
    for name in sorted(dir(module)):
        if not name.startswith("test_"):
            continue
        try:
            getattr(module, name)()
        except Exception as e:
            failed += 1
            print(f"FAIL {module_name}.{name}: {e!r}")
            sys.print_exception(e)
        else:
            passed += 1
            print(f"PASS {module_name}.{name}")
print(f"RESULT {sys.implementation.name} {sys.version} passed={passed} failed={failed}")
