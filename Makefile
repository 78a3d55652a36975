# Convenience wrappers; dev.py does the work (and sets up .venv by itself).
.PHONY: demo test bench docs
demo:
	python3 dev.py demo
test:
	python3 dev.py test
bench: 
	python3 dev.py setup && .venv/bin/python benchmarks/overhead.py
docs:
	python3 dev.py setup && .venv/bin/mkdocs serve
