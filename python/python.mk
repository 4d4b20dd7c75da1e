# Python extension module: placeholder until the binding lands (issue 8).
python:
