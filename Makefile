# mailpolicy: the two commands are `make test` and `make demo` (see README.md).
# Both install what they need on a fresh Debian 12 machine (as root): Debian packages with apt-get,
# Python packages into a venv at $(VENV).

VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := postfix libmilter-dev swaks libnet-ssleay-perl openssl prometheus chromium python3-venv python3-dev gcc libc6-dev
export DEBIAN_FRONTEND := noninteractive

.PHONY: deps venv lint test unit demo bench clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(PY):
	python3 -m venv $(VENV)

venv: deps $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'

lint: venv
	$(VENV)/bin/ruff check milter tests bench
	$(VENV)/bin/ruff format --check milter tests bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

# The fast tier only (no Postfix, no milter process).
unit: venv
	$(PY) -m pytest -q -p no:cacheprovider -m unit

demo: venv
	$(PY) tests/demo.py

bench: venv
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) artifacts .mypy_cache .ruff_cache
