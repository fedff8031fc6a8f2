"""Stand-in for ansible-test's pip bootstrap script (get-pip.py), which it downloads from a host
this machine cannot reach. Same contract: install pip (+ the packages named) into the running
interpreter, here from the standard library's ensurepip and the package registry pip is set up for.
"""
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
