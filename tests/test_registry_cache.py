"""The on-disk registry cache (engine/rules/cache.py) and the embedded tests read on demand
(issue 15 item 2): a hit is the registry the same files produced, any change is a miss, a
foreign or corrupt entry is never used, and adjudicating never reads tests.yaml."""
from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner

from cli import main
from conftest import ROOT
from engine.errors import PackError
from engine.rules import cache, load
from engine.rules.load import load_registry

PACKS = ("disease-status", "vah-eligibility", "eln-risk")   # what `screen` needs


@pytest.fixture
def rules(tmp_path):
    out = tmp_path / "rules"
    for p in PACKS:
        shutil.copytree(ROOT / "rules" / p, out / p)
    shutil.copytree(ROOT / "rules" / "_trials", out / "_trials")   # the protocol: which pack screens
    return out


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(d))
    return d


def entries(d):
    return sorted(d.glob("registry-*.pickle")) if d.is_dir() else []


def no_parsing(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the pack files were parsed: the cache was not used")
    monkeypatch.setattr(load, "load_pack", refuse)


def test_a_hit_is_the_same_registry_without_parsing(rules, cache_dir, monkeypatch):
    first = load_registry(rules)
    assert len(entries(cache_dir)) == 1
    no_parsing(monkeypatch)
    second = load_registry(rules)
    assert second is not first
    assert {p: x.identity() for p, x in second.packs.items()} == {p: x.identity() for p, x in first.packs.items()}
    for pid in PACKS:
        a, b = first.get(pid), second.get(pid)
        assert a.manifest == b.manifest
        assert [[e.key for e in s] for s in a.plan.strata] == [[e.key for e in s] for s in b.plan.strata]


def test_the_cached_registry_decides_the_same(rules, cache_dir, tmp_path):
    args = ["--rules-dir", str(rules), "--db", str(tmp_path / "a.sqlite"), "screen",
            str(ROOT / "fixtures/screening/C001-age-17.yaml"), "--json"]
    miss = CliRunner().invoke(main, args)
    hit = CliRunner().invoke(main, args)
    assert miss.exit_code == hit.exit_code == 0, miss.output + hit.output
    strip = lambda text: [line for line in text.splitlines() if "decision_id" not in line]  # noqa: E731
    assert strip(miss.output) == strip(hit.output)
    assert "INELIGIBLE" in hit.output


def test_an_edited_pack_is_a_miss(rules, cache_dir):
    before = load_registry(rules).get("eln-risk")
    f = rules / "eln-risk" / "pack.yaml"
    f.write_text(f.read_text() + "\n# an edit: new bytes, new sha256\n")
    after = load_registry(rules).get("eln-risk")
    assert after.sha256 != before.sha256
    assert len(entries(cache_dir)) == 2


def test_a_broken_pack_fails_even_after_a_good_load(rules, cache_dir):
    load_registry(rules)
    f = rules / "eln-risk" / "pack.yaml"
    f.write_text(f.read_text().replace("version:", "versio:", 1))
    with pytest.raises(PackError, match="pack.yaml"):
        load_registry(rules)


def test_a_new_engine_is_a_miss(rules, cache_dir, monkeypatch):
    load_registry(rules)
    monkeypatch.setattr(cache, "_ENGINE_PRINT", "another engine")
    load_registry(rules)
    assert len(entries(cache_dir)) == 2


def test_a_corrupt_entry_is_a_miss_and_is_replaced(rules, cache_dir):
    load_registry(rules)
    (entry,) = entries(cache_dir)
    entry.write_bytes(b"not a pickle")
    reg = load_registry(rules)
    assert set(reg.packs) == set(PACKS)
    assert entry.read_bytes() != b"not a pickle"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_an_entry_others_can_write_is_never_loaded(rules, cache_dir, monkeypatch):
    load_registry(rules)
    (entry,) = entries(cache_dir)
    entry.chmod(0o666)
    calls = []
    real = load.load_pack
    monkeypatch.setattr(load, "load_pack", lambda f: calls.append(f) or real(f))
    load_registry(rules)
    assert len(calls) == len(PACKS)  # parsed again: the writable entry was not trusted
    cache_dir.chmod(0o777)
    assert cache.load(cache.registry_key(rules, sorted(rules.iterdir()), load.PACK_FILE)) is None


def test_the_cache_folder_is_private(rules, cache_dir):
    load_registry(rules)
    assert cache_dir.stat().st_mode & 0o077 == 0
    assert all(e.stat().st_mode & 0o077 == 0 for e in entries(cache_dir))


def test_the_cache_can_be_turned_off(rules, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_registry(rules)
    assert not (tmp_path / "xdg").exists()


# --- tests.yaml is read by the rules commands only --------------------------------------------

def broken_tests(rules):
    for p in PACKS:
        (rules / p / "tests.yaml").write_text("tests: [this is: {not valid")


def test_adjudicating_never_reads_tests_yaml(rules, cache_dir, tmp_path):
    broken_tests(rules)
    r = CliRunner().invoke(main, ["--rules-dir", str(rules), "--db", str(tmp_path / "a.sqlite"), "screen",
                                  str(ROOT / "fixtures/screening/C001-age-17.yaml")])
    assert r.exit_code == 0, r.output
    assert "INELIGIBLE" in r.output


@pytest.mark.parametrize("command", [["rules", "test"], ["rules", "validate"]])
def test_rules_commands_read_and_check_tests_yaml(rules, cache_dir, command):
    load_registry(rules)  # a cached registry does not hide a broken tests.yaml
    broken_tests(rules)
    r = CliRunner().invoke(main, ["--rules-dir", str(rules), *command])
    assert r.exit_code == 2, r.output
    assert "tests.yaml" in r.output and "malformed YAML" in r.output
    assert "Traceback" not in r.output


def test_embedded_tests_are_loaded_on_first_use(rules, cache_dir):
    pack = load_registry(rules).get("eln-risk")
    assert pack._tests is None
    assert len(pack.tests) > 10 and pack._tests is pack.tests


# --- per-pack entries: a command unpickles the packs it uses ----------------------------------

def test_a_hit_unpickles_only_the_packs_used(rules, cache_dir, tmp_path):
    from engine.adjudicate.screening import run_screen
    load_registry(rules)
    reg = load_registry(rules)
    assert isinstance(reg.packs, load.LazyPacks) and reg.packs.loaded() == []
    assert list(reg.packs) == sorted(PACKS) and len(reg.packs) == len(PACKS) and "eln-risk" in reg.packs
    reg.get("eln-risk")
    assert reg.packs.loaded() == ["eln-risk"]
    assert reg.get("eln-risk") is reg.get("eln-risk")   # unpickled once
    again = load_registry(rules)
    run_screen(str(ROOT / "fixtures/screening/C001-age-17.yaml"), again, (), str(tmp_path / "a.sqlite"), "t")
    assert sorted(again.packs.loaded()) == sorted(PACKS)   # the screening packs, nothing else


def test_the_full_rules_folder_screens_with_its_screening_packs_only(cache_dir, tmp_path):
    from engine.adjudicate.screening import run_screen, screening_packs
    load_registry(ROOT / "rules")
    reg = load_registry(ROOT / "rules")
    run_screen(str(ROOT / "fixtures/screening/C001-age-17.yaml"), reg, (), str(tmp_path / "a.sqlite"), "t")
    assert sorted(reg.packs.loaded()) == sorted(p for p in screening_packs(reg) if p)
    assert len(reg.packs) > len(reg.packs.loaded())


def test_what_is_kept_beside_the_packs_is_what_the_packs_say(cache_dir):
    from engine.adjudicate.safety import tls_packs
    from engine.rules.explain import titles_of
    cache.save("k", load_registry(ROOT / "rules"))    # whatever the key: the entry's content
    fresh = load.Registry(packs={p.id: p for p in (load.load_pack(f) for f in sorted(
        (ROOT / "rules").iterdir()) if f.is_dir() and not f.name.startswith((".", "_")))}, root=ROOT / "rules")
    cached = cache.load("k")
    assert titles_of(cached) == titles_of(fresh) and len(titles_of(fresh)) > 100
    assert [p.id for p in tls_packs(cached)] == [p.id for p in tls_packs(fresh)] != []
    assert cached.packs.loaded() == [p.id for p in tls_packs(fresh)]   # titles: no pack unpickled
    assert dict(cached.packs.files()) == {p.sha256: p.path for p in fresh.packs.values()}


def test_a_cached_registry_pickles_as_every_pack(rules, cache_dir):
    import pickle
    load_registry(rules)
    reg = load_registry(rules)
    copy = pickle.loads(pickle.dumps(reg))
    assert type(copy.packs) is dict and list(copy.packs) == list(reg.packs)
    assert copy.packs == dict(reg.packs.items())


def test_an_entry_saved_under_another_key_is_a_miss(rules, cache_dir, monkeypatch):
    load_registry(rules)
    (entry,) = entries(cache_dir)
    key = cache.registry_key(rules, sorted(p for p in rules.iterdir() if not p.name.startswith("_")), load.PACK_FILE)
    other = cache_dir / f"registry-{'0' * 64}.pickle"
    entry.rename(other)
    assert cache.load("0" * 64) is None    # its content names the key it was saved under
    other.rename(entry)
    assert cache.load(key) is not None


@pytest.mark.skipif(os.name != "posix", reason="POSIX owners")
def test_an_entry_another_user_owns_is_never_loaded(rules, cache_dir, monkeypatch):
    load_registry(rules)
    key = cache.registry_key(rules, sorted(p for p in rules.iterdir() if not p.name.startswith("_")), load.PACK_FILE)
    assert cache.load(key) is not None
    monkeypatch.setattr(os, "getuid", lambda: os.stat(cache_dir).st_uid + 1)   # as another user sees it
    assert cache.load(key) is None
    no_parsing(monkeypatch)
    with pytest.raises(AssertionError, match="parsed"):
        load_registry(rules)


def test_an_edited_protocol_is_checked_again(rules, cache_dir, monkeypatch):
    from engine.rules import protocol
    load_registry(rules)
    calls = []
    real = protocol.check_fact_sources
    monkeypatch.setattr(protocol, "check_fact_sources", lambda proto, packs: calls.append(proto.id) or real(proto, packs))
    load_registry(rules).trial()
    assert calls == []        # these protocol bytes passed with these packs when the entry was saved
    f = rules / "_trials" / "vah" / "protocol.yaml"
    f.write_text(f.read_text() + "\n# an edit: the protocol is not in the key\n")
    load_registry(rules).for_trial("vah")
    assert calls == ["vah"]
