"""Event builders for report tests and the benchmark: hand-built events with known answers, and
a seeded generator of realistic mixed traffic (several hosts, policies, TLS versions, authenticated
and unauthenticated senders, forwarders that seal ARC chains and mailing lists, messages to one or
many recipients); :func:`month` is a month of it as a postmaster would see it."""

from __future__ import annotations

import bisect
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE = datetime(2026, 11, 20, tzinfo=UTC)


def ts(day: int = 0, seconds: float = 0.0) -> str:
    t = BASE + timedelta(days=day, seconds=seconds)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision(
    mode: str = "monitor",
    result: str = "pass",
    action: str = "continue",
    *,
    applied: bool = False,
    exempt: str | None = None,
    override: str | None = None,
    overridden_action: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "mode": mode,
        "result": result,
        "action": action,
        "applied": applied,
        "exempt": exempt,
        "override": override,
        "overridden_action": overridden_action,
    }
    if details is not None:
        d["details"] = details
    return d


def dmarc_override(
    reason: str,
    by: str | None,
    mode: str = "monitor",
    overridden: str = "reject",
    domain: str = "bank.example",
) -> dict[str, Any]:
    """A DMARC failure that an override accepted (``trusted_forwarder``, ``mailing_list``), as the
    milter records it."""
    details: dict[str, Any] = {"domain": domain, "policy": "reject", "disposition": "reject"}
    if by is not None:
        details["override_by"] = by
    return decision(mode, "fail", "continue", override=reason, overridden_action=overridden, details=details)


def arc_chain(*sealers: str, result: str | None = None) -> dict[str, Any]:
    """The transaction event's ``arc`` object: ``sealers`` oldest first, the newest last; the
    result is ``pass`` with sealers, ``none`` without."""
    result = result or ("pass" if sealers else "none")
    return {
        "result": result,
        "instances": len(sealers),
        "sealers": list(sealers),
        "oldest_pass": 0 if result == "pass" else None,
        "reason": "" if result in ("pass", "none") else "signature mismatch",
    }


def old_event(ev: dict[str, Any]) -> dict[str, Any]:
    """The event as a milter before ARC validation and DMARC overrides wrote it: no ``arc``, no
    ``list_id``, no ``override``/``overridden_action`` and no ``details.override_by``."""
    out = {k: v for k, v in ev.items() if k not in ("arc", "list_id")}
    if "policies" in out:
        pols = {}
        for name, d in out["policies"].items():
            d = {k: v for k, v in d.items() if k not in ("override", "overridden_action")}
            if "details" in d:
                d["details"] = {k: v for k, v in d["details"].items() if k != "override_by"}
            pols[name] = d
        out["policies"] = pols
    return out


def would_reject(result: str = "fail") -> dict[str, Any]:
    return decision("monitor", result, "reject")


def txn(
    *,
    host: str = "mx1",
    day: int = 0,
    seconds: float = 0.0,
    ip: str | None = "192.0.2.10",
    name: str | None = "mail.example.net",
    mail_from: str = "alice@example.net",
    tls: str | None = "TLSv1.3",
    cipher: str | None = "TLS_AES_256_GCM_SHA384",
    policies: dict[str, dict[str, Any]] | None = None,
    header_from: str | None = None,
    authenticated: bool | None = None,
    dmarc: str | None = None,
    dkim: list[tuple[str, bool]] | None = None,
    outcome: str = "accepted",
    final_action: str = "continue",
    schema: int = 1,
    conn_id: str = "c1",
    arc: dict[str, Any] | None = None,
    list_id: str | None = None,
    rcpts: int = 1,
    rcpt_rejected: int = 0,
) -> dict[str, Any]:
    """A transaction event. ``arc`` (see :func:`arc_chain`) and ``list_id`` are written only when
    given, as for a message the milter did not look at."""
    ev: dict[str, Any] = {
        "ts": ts(day, seconds),
        "host": host,
        "schema": schema,
        "event": "transaction",
        "conn_id": conn_id,
        "txn": 1,
        "queue_id": "4AbCdEf",
        "start": ts(day, seconds),
        "client_ip": ip,
        "client_port": 40000,
        "client_name": name,
        "helo": name,
        "auth": None,
        "mail_from": mail_from,
        "rcpt_count": rcpts,
        "rcpt_rejected": rcpt_rejected,
        "starttls": tls is not None,
        "tls_version": tls,
        "tls_cipher": cipher if tls else None,
        "tls_cipher_bits": 256 if tls else None,
        "tls_cert_subject": None,
        "tls_cert_issuer": None,
        "policies": policies or {},
        "final_action": final_action,
        "outcome": outcome,
        "stage": "eom",
    }
    if header_from is not None or authenticated is not None or dmarc is not None or dkim is not None:
        ev["header_from_domain"] = header_from
        ev["spf"] = {"result": "pass", "scope": "mailfrom", "domain": header_from}
        ev["dkim"] = [
            {
                "result": r,
                "domain": header_from,
                "selector": "s1",
                "algorithm": "rsa-sha256",
                "bits": 2048,
                "aligned": al,
            }
            for r, al in (dkim or [])
        ]
        if dmarc is not None:
            ev["dmarc"] = {
                "result": dmarc,
                "domain": header_from,
                "policy_domain": header_from,
                "policy": "reject",
                "disposition": "none",
                "spf_aligned": False,
                "dkim_aligned": False,
            }
        if authenticated is not None:
            ev["authenticated"] = authenticated
        ev["dns_errors"] = []
    if arc is not None:
        ev["arc"] = arc
    if list_id is not None:
        ev["list_id"] = list_id
    return ev


def conn(
    *,
    host: str = "mx1",
    day: int = 0,
    seconds: float = 0.0,
    ip: str | None = "192.0.2.10",
    name: str | None = "mail.example.net",
    tls: str | None = "TLSv1.3",
    cipher: str | None = "TLS_AES_256_GCM_SHA384",
    transactions: int = 1,
    schema: int = 1,
    conn_id: str = "c1",
) -> dict[str, Any]:
    return {
        "ts": ts(day, seconds),
        "host": host,
        "schema": schema,
        "event": "connection",
        "conn_id": conn_id,
        "start": ts(day, seconds - 1),
        "end": ts(day, seconds),
        "duration_s": 1.0,
        "client_ip": ip,
        "client_port": 40000,
        "client_name": name,
        "daemon": "smtpd",
        "helo": [name] if name else [],
        "starttls": tls is not None,
        "tls_version": tls,
        "tls_cipher": cipher if tls else None,
        "tls_cipher_bits": 256 if tls else None,
        "tls_cert_subject": None,
        "tls_cert_issuer": None,
        "transactions": transactions,
        "messages": transactions,
        "outcomes": {"accepted": transactions},
        "end_stage": "eom",
    }


def lines(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)


# ---------------------------------------------------------------------------------------------
# Realistic random traffic

_TLS_MIX = [("TLSv1.3", 70), ("TLSv1.2", 20), (None, 6), ("TLSv1", 2), ("TLSv1.1", 1), ("unknown", 1)]
_CIPHERS = {
    "TLSv1.3": ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"],
    "TLSv1.2": ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"],
    "TLSv1.1": ["ECDHE-RSA-AES128-SHA"],
    "TLSv1": ["AES128-SHA"],
    "unknown": ["UNKNOWN"],
}


def _client(rng: random.Random, i: int) -> dict[str, Any]:
    versions, weights = zip(*_TLS_MIX, strict=True)
    tls = rng.choices(versions, weights)[0]
    if rng.random() < 0.15:
        ip = f"2001:db8:{i % 97:x}:{i % 13:x}::{i:x}"
    else:
        ip = f"198.{18 + i % 2}.{(i // 7) % 256}.{i % 250 + 1}"
    domain = f"sender{i % 700}.example"
    # Some clients relay other people's mail: forwarders that seal an ARC chain, and list servers
    # (a List-Id; most of them seal too). Their mail fails DMARC for the author's domain.
    kind = rng.choices(("direct", "forwarder", "list"), (94, 3, 3))[0]
    n = i % 20 if kind == "forwarder" else i % 10
    sealer = f"fwd{n}.example.net" if kind == "forwarder" else f"lists{n}.example.org"
    return {
        "ip": ip,
        "name": f"mx{i}.{domain}" if rng.random() < 0.9 else "unknown",
        "tls": tls,
        "domain": domain,
        "auth_p": rng.choice([0.98, 0.9, 0.5, 0.05]),
        "spf_fail_p": rng.choice([0.0, 0.01, 0.3]),
        "kind": kind,
        "sealer": None if kind == "direct" or (kind == "list" and rng.random() < 0.3) else sealer,
        "list_id": f"l{i % 7}.lists{n}.example.org" if kind == "list" else None,
        # a third of the sealers are trusted already ([policies.dmarc] trusted_arc_sealers), and
        # the lists of every other list server ([policies.dmarc] mailing_lists)
        "trusted": n % 3 == 0,
        "trusted_list": n % 2 == 0,
    }


def _recipients(rng: random.Random, relay: bool) -> int:
    """Recipients of one message: mostly one; list mail and some direct mail to many."""
    if relay:
        return rng.choice((1, 1, 2, 3, 5, 8, 12, 25, 40))
    roll = rng.random()
    if roll < 0.8:
        return 1
    if roll < 0.93:
        return rng.randint(2, 3)
    if roll < 0.99:
        return rng.randint(4, 9)
    return rng.randint(10, 50)


def _day_weights(days: int, weekly: bool) -> list[float]:
    """Cumulative share of the traffic at the end of each day: flat, or a working week (weekends
    at 40 %) when ``weekly``."""
    weights = [0.4 if weekly and (BASE + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(days)]
    total, acc, out = sum(weights), 0.0, []
    for w in weights:
        acc += w
        out.append(acc / total)
    return out


def generate(
    n_events: int,
    seed: int = 1,
    hosts: int = 3,
    days: int = 7,
    *,
    policies: int = 4,
    weekly: bool = False,
    incident: bool = False,
) -> Iterator[bytes]:
    """Yield ``n_events`` event lines (+ about 1% diagnostics lines, not counted in n_events).

    Four policies: require_starttls, tls_min_version and spf in monitor mode, dmarc enforced;
    ``policies=6`` adds arc (monitor mode: would reject a broken ARC chain) and ``dnsbl`` (monitor
    mode, a stand-in for a later policy: would reject a few listed spam sources). ``weekly``: less
    mail at weekends; ``incident``: a big sender's SPF record is broken for three days in the
    middle of the period. The recipients and these options draw from their own random streams, so
    the rest of the traffic is the same for a seed whatever they are."""
    rng = random.Random(seed)
    extra = random.Random(seed * 7919 + 1)  # recipients, extra policies, the incident
    clients = [_client(rng, i) for i in range(5000)]
    relays = [c for c in clients if c["kind"] != "direct"]
    host_names = [f"mx{h + 1}.example.org" for h in range(hosts)]
    cumulative = _day_weights(days, weekly)
    broken = clients[1]  # the second biggest sender (pareto): its SPF breaks during the incident
    incident_days = range(days // 2 - 1, days // 2 + 2) if incident else range(0)
    emitted = 0
    conn_no = 0
    while emitted < n_events:
        conn_no += 1
        # about 5% of the connections relay someone else's mail
        relay = rng.random() < 0.05
        c = rng.choice(relays) if relay else clients[int(rng.paretovariate(1.2)) % len(clients)]
        host = host_names[conn_no % hosts]
        u = emitted / n_events
        day = min(bisect.bisect_right(cumulative, u), days - 1)
        start = cumulative[day - 1] if day else 0.0
        t = 86400.0 * (day + (u - start) / (cumulative[day] - start))
        tls = c["tls"]
        cipher = rng.choice(_CIPHERS[tls]) if tls else None
        ntx = rng.choice((0, 1, 1, 1, 2))
        for k in range(ntx):
            relayed = c["kind"] != "direct"
            auth = rng.random() < c["auth_p"] and not relayed
            plain = tls is None
            old = tls in ("TLSv1", "TLSv1.1")
            spf_fail = rng.random() < c["spf_fail_p"] or (c is broken and day in incident_days)
            dmarc = "pass" if auth else rng.choice(("fail", "none", "fail"))
            dmarc_action = "reject" if dmarc == "fail" and rng.random() < 0.5 else "continue"
            if rng.random() < 0.002:
                dmarc, dmarc_action = "temperror", "tempfail"
            author = f"sender{rng.randrange(700)}.example" if relayed else c["domain"]
            pol = {
                "require_starttls": decision(
                    "monitor", "fail" if plain else "pass", "reject" if plain else "continue"
                ),
                "tls_min_version": decision(
                    "monitor",
                    "fail" if old else ("none" if plain else "pass"),
                    "reject" if old else "continue",
                ),
                "spf": decision(
                    "monitor", "fail" if spf_fail else "pass", "reject" if spf_fail else "continue"
                ),
                "dmarc": decision("enforce", dmarc, dmarc_action, applied=dmarc_action != "continue"),
            }
            if relayed and dmarc_action == "reject":
                if c["sealer"] and c["trusted"]:
                    pol["dmarc"] = dmarc_override("trusted_forwarder", c["sealer"], "enforce", domain=author)
                    dmarc_action = "continue"
                elif c["list_id"] and c["trusted_list"]:
                    pol["dmarc"] = dmarc_override("mailing_list", c["list_id"], "enforce", domain=author)
                    dmarc_action = "continue"
            chain = arc_chain(c["sealer"]) if c["sealer"] else arc_chain()
            if policies > 4:
                if c["sealer"] and extra.random() < 0.01:
                    chain = arc_chain(c["sealer"], result="fail")
                arc_fail = chain["result"] == "fail"
                pol["arc"] = decision("monitor", chain["result"], "reject" if arc_fail else "continue")
                listed = c["auth_p"] < 0.1 and sum(c["ip"].encode()) % 29 == 0
                pol["dnsbl"] = decision(
                    "monitor", "listed" if listed else "pass", "reject" if listed else "continue"
                )
            refused = dmarc_action != "continue"
            ev = txn(
                host=host,
                seconds=t + k,
                ip=c["ip"],
                name=c["name"],
                tls=tls,
                cipher=cipher,
                mail_from=f"user{rng.randrange(50)}@{c['domain']}",
                policies=pol,
                header_from=author,
                authenticated=auth,
                dmarc=dmarc,
                dkim=[("pass", auth)] if rng.random() < 0.8 else [],
                outcome=("rejected" if dmarc_action == "reject" else "tempfailed") if refused else "accepted",
                final_action=dmarc_action,
                conn_id=f"{conn_no:x}",
                arc=chain,
                list_id=c["list_id"],
                rcpts=_recipients(extra, relayed),
            )
            yield json.dumps(ev, separators=(",", ":")).encode() + b"\n"
            emitted += 1
        ev = conn(
            host=host,
            seconds=t + ntx,
            ip=c["ip"],
            name=c["name"],
            tls=tls,
            cipher=cipher,
            transactions=ntx,
            conn_id=f"{conn_no:x}",
        )
        yield json.dumps(ev, separators=(",", ":")).encode() + b"\n"
        emitted += 1
        if rng.random() < 0.01:
            yield (
                b'{"ts":"'
                + ts(0, t).encode()
                + b'","host":"'
                + host.encode()
                + b'","level":"warning","logger":"mailpolicy.dns","msg":"DNS timeout"}\n'
            )


def month(n_events: int = 60_000, seed: int = 30, policies: int = 4) -> bytes:
    """A realistic month: 30 days of mail on four MX hosts, less at weekends, a big sender's SPF
    broken for three days mid-month, policies of very different size (a few old-TLS clients next
    to a few thousand SPF failures)."""
    return b"".join(
        generate(n_events, seed=seed, hosts=4, days=30, policies=policies, weekly=True, incident=True)
    )


def report(tmp_path: Path, events: list[dict[str, Any]] | bytes, **opts: Any) -> dict[str, Any]:
    """The report document (``--format json``) over ``events`` written to a file in ``tmp_path``."""
    from mailpolicy.report import Options, build_report

    path = tmp_path / "events.log"
    path.write_bytes(events if isinstance(events, bytes) else lines(events))
    return build_report([str(path)], Options(**opts))


def policy(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """One policy's object of a report document."""
    return next(p for p in doc["policies"] if p["name"] == name)


def count_by_hand(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the report's combined scenario should say, counted from the events themselves, as README
    defines it: a transaction is lost when a monitor-mode policy would refuse (reject or tempfail) it
    and it was delivered today (outcome accepted or quarantined), with the recipients it had after
    RCPT. Returns ``lost`` [messages, recipients], ``by`` and ``only`` {policy: [messages,
    recipients]} (among the lost, the policies that would refuse it / the one policy alone),
    ``aborted`` {policy: [messages, recipients]} (what it would refuse that was aborted) and
    ``refused_today`` (transactions a monitor-mode policy would refuse that enforce mode refused)."""
    lost = [0, 0]
    by: dict[str, list[int]] = {}
    only: dict[str, list[int]] = {}
    aborted: dict[str, list[int]] = {}
    refused_today = 0

    def add(into: dict[str, list[int]], name: str, live: int) -> None:
        row = into.setdefault(name, [0, 0])
        row[0] += 1
        row[1] += live

    for ev in events:
        if ev.get("event") != "transaction":
            continue
        would = [
            k
            for k, d in ev["policies"].items()
            if d["mode"] == "monitor" and d["action"] in ("reject", "tempfail")
        ]
        if not would:
            continue
        live = ev["rcpt_count"] - ev["rcpt_rejected"]
        if ev["outcome"] in ("rejected", "tempfailed"):
            refused_today += 1
        elif ev["outcome"] == "aborted":
            for name in would:
                add(aborted, name, live)
        elif ev["outcome"] in ("accepted", "quarantined"):
            lost[0] += 1
            lost[1] += live
            for name in would:
                add(by, name, live)
            if len(would) == 1:
                add(only, would[0], live)
    return {"lost": lost, "by": by, "only": only, "aborted": aborted, "refused_today": refused_today}
