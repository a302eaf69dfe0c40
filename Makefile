# Two commands do everything: `make demo` and `make test`.
.PHONY: setup demo test lab-up lab-down lint bench

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test:
	bash scripts/test.sh

lab-up: setup
	.venv/bin/seawall lab up

lab-down:
	.venv/bin/seawall lab down

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench: setup
	.venv/bin/python -m benchmarks.datapath --json
