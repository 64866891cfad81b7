from lokal.engine.stops import StopMatcher


def run(stops, pieces):
    m = StopMatcher(stops)
    out = [m.feed(p) for p in pieces]
    return out, m.flush(), m.stopped


def test_no_stops_passes_text_through():
    assert run([], ["a", "b"]) == (["a", "b"], "", False)


def test_stop_inside_one_piece_cuts_before_it():
    assert run(["END"], ["helloENDworld"]) == (["hello"], "", True)


def test_stop_split_across_pieces_is_held_back_then_dropped():
    out, tail, stopped = run(["</s>"], ["hi <", "/", "s>", "more"])
    assert "".join(out) == "hi "
    assert stopped and tail == ""
    assert out == ["hi ", "", "", ""]


def test_partial_match_that_fails_is_released():
    out, tail, stopped = run(["STOP"], ["ST", "AR"])
    assert out == ["", "STAR"]
    assert not stopped and tail == ""


def test_held_text_is_flushed_at_the_end():
    out, tail, stopped = run(["STOP"], ["abc ST"])
    assert out == ["abc "]
    assert tail == "ST" and not stopped


def test_earliest_of_several_stops_wins():
    out, _, _ = run(["world", "lo"], ["hello world"])
    assert out == ["hel"]


def test_nothing_after_stop():
    m = StopMatcher(["x"])
    assert m.feed("axb") == "a"
    assert m.feed("more") == ""
    assert m.flush() == ""
