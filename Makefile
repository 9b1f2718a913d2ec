# mailpolicy: the two commands are `make test` and `make demo` (see README.md).
# Both install what they need on a fresh Debian 12 machine (as root): Debian packages with apt-get,
# Python packages into a venv at $(VENV).

VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := postfix libmilter-dev swaks libnet-ssleay-perl openssl prometheus chromium python3-venv python3-dev gcc libc6-dev
# The Sendmail tests (tests/e2e/test_sendmail.py) run the sendmail binary unpacked from the Debian
# packages (sendmail-bin conflicts with postfix, so it is never installed): these are the libraries it
# links (ldd), m4 to build its sendmail.cf, and mount for the bind mounts in its private namespace.
APT_PACKAGES += libwrap0 libdb5.3 libldap-2.5-0 libnsl2 libsasl2-2 libssl3 m4 mount
SENDMAIL_CACHE := .cache/sendmail
# man and groff render the man page in tests/mailpolicy/test_manpage.py (`man --warnings -l`).
APT_PACKAGES += man-db groff-base
# logrotate runs the shipped contrib/logrotate/mailpolicy (tests/protocol/test_logrotate.py);
# systemd-analyze verifies the shipped unit (tests/test_systemd_unit.py).
APT_PACKAGES += logrotate systemd
# make bench only: the OpenDKIM + OpenDMARC pair it compares mailpolicy with (bench/throughput.py).
BENCH_APT_PACKAGES := opendkim opendmarc
export DEBIAN_FRONTEND := noninteractive

.PHONY: deps build-deps bench-deps venv lint test unit demo bench clean sendmail

# $(call apt_install,PACKAGES,THEN): apt-get install those of PACKAGES not installed yet; THEN (may be
# empty) continues that shell command, e.g. "&& command", with $$missing naming them.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null $(2); \
	fi
endef

deps:
	$(call apt_install,$(APT_PACKAGES),)

# Debian starts the packages' own services where it can: stopped, the benchmark runs its own daemons.
# What `pip install` of mailpolicy needs to build pymilter (make man).
BUILD_APT_PACKAGES := libmilter-dev python3-venv python3-dev gcc libc6-dev
build-deps:
	$(call apt_install,$(BUILD_APT_PACKAGES),)

bench-deps: deps
	$(call apt_install,$(BENCH_APT_PACKAGES),&& for s in $$missing; do invoke-rc.d $$s stop >/dev/null 2>&1 || true; done)

$(PY):
	python3 -m venv $(VENV)

# sendmail-bin and sendmail-cf downloaded (not installed) and unpacked into $(SENDMAIL_CACHE)/root,
# once: the stamp file is written last, so an interrupted run starts over.
sendmail: deps $(SENDMAIL_CACHE)/root/.unpacked

$(SENDMAIL_CACHE)/root/.unpacked:
	rm -rf $(SENDMAIL_CACHE) && mkdir -p $(SENDMAIL_CACHE)/debs
	cd $(SENDMAIL_CACHE)/debs && { apt-get download -qq -o APT::Sandbox::User=root sendmail-bin sendmail-cf \
	  || { apt-get update -qq && apt-get download -qq -o APT::Sandbox::User=root sendmail-bin sendmail-cf; }; }
	for deb in $(SENDMAIL_CACHE)/debs/*.deb; do dpkg-deb -x $$deb $(SENDMAIL_CACHE)/root || exit 1; done
	test -x $(SENDMAIL_CACHE)/root/usr/libexec/sendmail/sendmail
	test -f $(SENDMAIL_CACHE)/root/usr/share/sendmail/cf/m4/cf.m4
	touch $@

venv: deps $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'

lint: venv
	$(VENV)/bin/ruff check milter tests bench setup.py
	$(VENV)/bin/ruff format --check milter tests bench setup.py
	$(VENV)/bin/mypy

test: lint sendmail
	$(PY) -m pytest -q -p no:cacheprovider

# The fast tier only (no Postfix, no milter process).
unit: venv
	$(PY) -m pytest -q -p no:cacheprovider -m unit

demo: venv
	$(PY) tests/demo.py

# Seven configurations in interleaved rounds, then mailpolicy's memory with 200 sessions (a few minutes).
bench: venv bench-deps
	$(PY) bench/throughput.py

# mailpolicy(1) rendered from the argparse definitions (wheels get it from setup.py's build_man step);
# read it with `man -l build/man/mailpolicy.1`. Needs what building pymilter needs, not the tests' apt list.
.PHONY: man
man: build-deps $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -e .
	$(PY) -m mailpolicy.manpage build/man/mailpolicy.1

clean:
	rm -rf $(VENV) artifacts .mypy_cache .ruff_cache .cache
