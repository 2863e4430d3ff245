import os
import sys

from sae.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A torchrun rank leaves without interpreter finalization: tearing down after gloo's
    # destroy_process_group() sometimes aborts a rank ("terminate called without an active
    # exception", no Python frame; 2 of 13 runs of tests/sae/test_ddp.py on a loaded machine).
    # Every file is closed by now; flush the streams and exit with the command's code.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
sys.exit(code)
