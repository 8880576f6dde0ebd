# Common tasks. `make report` builds reports/index.html and one HTML page per notebook.
PYTHON ?= python
SCALE ?= smoke
OUT ?= reports

.PHONY: test lint kernel report report-default

test:
	$(PYTHON) -m pytest -q

lint:
	ruff check .

kernel:
	$(PYTHON) -m ipykernel install --user --name python3

report:
	$(PYTHON) -m crystalflow_core.cli report --scale $(SCALE) --out $(OUT)

report-default:
	$(PYTHON) -m crystalflow_core.cli report --scale default --out $(OUT)
