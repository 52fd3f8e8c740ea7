"""``reverse invert`` on hash locks: a hand-written MD5 network whose output is 1 iff md5 of its 8 input bytes
equals a stored digest. The lock is found by identify, the preimage by a candidate search over a word list, and
the network itself confirms it; the search resumes where it stopped; candidates come in the documented order."""

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from paramlens.cli import app
from paramlens.errors import ParamLensError, UsageError
from paramlens.models.compiled import hash_network
from paramlens.reverse.candidates import Candidates, Words, load_words
from paramlens.reverse.catalogue import Catalogue, Entry
from paramlens.reverse.invert import invert_file
from paramlens.reverse.preimage import Lock, find_lock, invert_lock, search_preimage

N_BYTES = 8
PHRASE = b"Red-wine"
WORDS = ["the", "white", "red", "of", "wine", "beer"]


def _digest(message: bytes) -> bytes:
    return hashlib.md5(message.ljust(N_BYTES, b"\0")).digest()


@pytest.fixture(scope="module")
def lock_file(tmp_path_factory):
    """MD5 over 8 byte codes, all 64 steps, output 1 iff the digest is that of "Red-wine" (zero-padded), float32."""
    net = hash_network("md5", N_BYTES, target=_digest(PHRASE))
    path = tmp_path_factory.mktemp("lock") / "lock.safetensors"
    save_file(dict(net.tensors(torch.float32)), str(path))
    return path


@pytest.fixture
def words(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(WORDS) + "\n\n")
    return path


def _lock(digest: bytes, inputs: str = f"bytes:{N_BYTES}") -> Lock:
    return Lock("md5", digest, 0, 1.0, inputs, "", 1, 1, 1)


def test_identify_finds_the_lock_and_the_search_opens_it_confirmed_by_the_network(lock_file, words, tmp_path):
    lock, _ = find_lock(lock_file, progress=False)
    assert lock is not None and lock.entry == "md5" and lock.digest == _digest(PHRASE)
    assert (lock.unit, lock.value, lock.inputs) == (0, 1.0, f"bytes:{N_BYTES}")
    result = invert_file(str(lock_file), "1", words=words, state_dir=tmp_path, progress=False)
    assert result.found and result.message == PHRASE
    assert result.input == list(PHRASE) and "network itself outputs 1" in result.why
    assert "one-way" in result.tried and "no solver finishes" in result.tried


def test_a_preimage_the_network_does_not_accept_is_not_reported(lock_file, words):
    forged = _lock(_digest(b"white of"))  # the search finds "white of", which the network does not open on
    result = invert_lock(lock_file, forged, load_words(words), 1, progress=False)
    assert not result.found and "network outputs [0.0]" in result.why


@pytest.mark.parametrize("workers", [1, 2])
def test_a_word_list_without_the_answer_ends_the_search_and_says_so(words, workers):
    out = search_preimage(_lock(_digest(b"no such")), load_words(words), workers=workers, progress=False)
    assert out.message is None and out.stopped == "exhausted"
    assert out.state.tried == sum(1 for _, _, chunk in Candidates(load_words(words), N_BYTES).chunks() for _ in chunk)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_preimage_in_search_order_is_found_with_any_number_of_workers(words, workers):
    out = search_preimage(_lock(_digest(b"WINE_RED")), load_words(words), workers=workers, progress=False)
    assert out.message == b"WINE_RED" and out.state.found == b"WINE_RED".hex()


def test_a_search_stopped_by_its_time_limit_resumes_where_it_stopped(words, tmp_path):
    lock, listed = _lock(_digest(b"wine.red")), load_words(words)
    state = tmp_path / "search.json"
    first = search_preimage(lock, listed, state_file=state, max_seconds=1e-9, progress=False)
    assert first.message is None and first.stopped == "time limit" and first.state.chunk == 1
    second = search_preimage(lock, listed, state_file=state, progress=False)
    assert second.message == b"wine.red" and "resuming at chunk 1" in second.resumed
    assert second.state.tried > first.state.tried
    again = search_preimage(lock, listed, state_file=state, progress=False)  # found: answered from the saved state
    assert again.message == b"wine.red" and again.state.tried == second.state.tried


def test_ctrl_c_saves_the_search(words, tmp_path):
    calls = []

    def md5_then_interrupt(message: bytes) -> bytes:
        calls.append(1)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return hashlib.md5(message).digest()

    catalogue = Catalogue((Entry("md5", md5_then_interrupt, one_way=True),))
    state = tmp_path / "search.json"
    out = search_preimage(_lock(_digest(b"beer.red")), load_words(words), state_file=state, catalogue=catalogue,
                          workers=1, progress=False)
    assert out.stopped == "interrupted" and state.is_file()
    assert search_preimage(_lock(_digest(b"beer.red")), load_words(words), state_file=state, progress=False).message \
        == b"beer.red"


def test_a_saved_search_of_another_word_list_is_not_resumed(words, tmp_path):
    state = tmp_path / "search.json"
    search_preimage(_lock(_digest(b"nothing")), load_words(words), state_file=state, progress=False)
    other = Words(["wine", "red"], "two words")
    out = search_preimage(_lock(_digest(b"nothing")), other, state_file=state, progress=False)
    assert "another digest or word list" in out.resumed and out.state.tried < 100


def test_candidates_come_singles_first_then_pairs_by_rank_with_styles_and_separators():
    listed = Words(["red", "wine", "of"], "three")
    chunks = [(what, list(m)) for _, what, m in Candidates(listed, 8).chunks()]
    singles = chunks[0][1]
    assert singles == [b"red", b"Red", b"RED", b"wine", b"Wine", b"WINE", b"of", b"Of", b"OF"]
    pairs = [m for what, c in chunks if "pairs" in what for m in c]
    assert pairs[:5] == [b"redred", b"red red", b"red-red", b"red_red", b"red.red"]
    assert {b"Red wine", b"RED_WINE", b"Wine-red", b"wine.red", b"Redwine"} <= set(pairs)
    assert all(len(m) <= 8 for _, c in chunks for m in c) and b"wine-wine" not in pairs
    first_wine = next(i for i, (what, _) in enumerate(chunks) if "up to rank 2 " in what)
    assert all(b"of" not in m.lower() for what, c in chunks[:first_wine + 1] for m in c if "pairs" in what)
    triples = [m for what, c in chunks if "triples" in what for m in c]
    assert b"red of of" not in triples and {b"redofof", b"of of of"} <= set(triples)  # 8 bytes at most
    resumed = [what for _, what, _ in Candidates(listed, 8).chunks(start=2)]
    assert resumed == [what for what, _ in chunks[2:]]


def test_word_lists_keep_their_order_and_refuse_what_is_not_one(words, tmp_path, monkeypatch):
    assert load_words(words).words == WORDS
    with pytest.raises(ParamLensError, match="no such file"):
        load_words(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ParamLensError, match="holds no words"):
        load_words(tmp_path / "empty.txt")
    monkeypatch.setattr("paramlens.reverse.candidates.SYSTEM_LISTS", (tmp_path / "none",))
    with pytest.raises(ParamLensError, match="apt-get install wamerican"):
        load_words()


def test_the_system_list_is_lowercase_words_ranked_by_frequency(monkeypatch, tmp_path):
    (tmp_path / "words").write_text("Zeus\nbeer\nbeer's\nthe\nwine\nzymurgy\n")
    corpus = tmp_path / "fortunes"
    corpus.mkdir()
    (corpus / "drinks").write_text("The wine, the WINE and the beer.\n%\nthe end\n")
    (corpus / "drinks.dat").write_bytes(b"\x00the the the zymurgy")
    monkeypatch.setattr("paramlens.reverse.candidates.SYSTEM_LISTS", (tmp_path / "words",))
    monkeypatch.setattr("paramlens.reverse.candidates.CORPUS", corpus)
    listed = load_words()
    assert listed.words == ["the", "wine", "beer", "zymurgy"] and "ranked by frequency" in listed.source


def test_bit_inputs_spell_the_message_in_the_lock_bit_order():
    low = _lock(b"", "bits:12")
    assert low.message_bytes == 1 and low.encode(b"\x01").tolist() == [1.0] + [0.0] * 11
    high = Lock("md5", b"", 0, 1.0, "bits:8", "highest bit first", 1, 1, 1)
    assert high.encode(b"\x01").tolist() == [0.0] * 7 + [1.0]
    assert np.array_equal(_lock(b"").encode(b"ab"), [97, 98, 0, 0, 0, 0, 0, 0])


def test_cli_prints_the_preimage_and_exits_0_or_4(lock_file, words, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["reverse", "invert", str(lock_file), "--target", "1", "--words", str(words),
                             "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "input: 'Red-wine' (bytes 5265642d77696e65" in ok.output
    (tmp_path / "few.txt").write_text("the\nof\n")
    missing = runner.invoke(app, ["reverse", "invert", str(lock_file), "--target", "1", "--words",
                                  str(tmp_path / "few.txt"), "--out", str(tmp_path)])
    assert missing.exit_code == 4 and "no candidate gives the digest" in missing.output
    bad = runner.invoke(app, ["reverse", "invert", str(lock_file), "--target", "1", "--input", "words:3"])
    assert isinstance(bad.exception, UsageError) and "--input takes auto" in str(bad.exception)  # exit 2 in main


def test_the_installed_system_list_loads_ranked():
    listed = load_words()  # `make system` installs wamerican and fortunes
    assert len(listed.words) > 50_000 and listed.words[0] == "the" and "ranked by frequency" in listed.source
    assert all(w.isalpha() and w.islower() for w in listed.words[:1000])
