"""What the next request sends, from the stored records."""

from __future__ import annotations

from assisters.conversation.history import History, summarize


def user(text: str, model: str = "m") -> dict:
    return {"role": "user", "content": text, "model": model, "time": "2025-01-02T10:00:00.000Z"}


def answer(text: str, **marks: object) -> dict:
    return {"role": "assistant", "content": text, **marks}


def test_interrupted_and_cut_answers_are_sent_as_shown():
    history = History.from_records([
        user("q1"), answer("half an ans", interrupted=True),
        user("q2"), answer("cut", incomplete=True, error="the stream broke"),
        user("q3"),
    ])
    assert history.messages() == [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "half an ans"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "cut"},
        {"role": "user", "content": "q3"},
    ]


def test_a_question_without_an_answer_text_is_not_sent_again():
    history = History.from_records([
        user("failed"), answer("", incomplete=True, error="HTTP 500"),
        user("killed before its answer"),
        user("q"), answer("a"),
        user("now"),
    ])
    assert history.messages() == [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
        {"role": "user", "content": "now"},
    ]
    assert history.earlier_answered() == 1


def test_system_undo_retry_and_drop():
    history = History.from_records([
        {"role": "system", "content": "old"}, user("q1"), answer("a1"),
        {"role": "system", "content": "new"}, user("q2"), answer("a2"),
        user("q3"), answer("a3"), {"event": "undo"},
        user("q4"), answer("first try"), {"event": "retry"},
    ])
    assert history.system == "new"
    assert history.messages() == [
        {"role": "system", "content": "new"},
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "q4"},
    ]
    assert history.messages(drop=1) == [
        {"role": "system", "content": "new"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "q4"},
    ]
    assert History.from_records([{"role": "system", "content": "x"}, {"role": "system", "content": ""}]
                                ).system is None


def test_export_model_size_and_summary():
    records = [user("Hello   there,\nhow are you", model="a"), answer("fine", usage={"prompt_tokens": 7}),
               user("and you?", model="b")]
    history = History.from_records(records)
    assert history.model == "b"
    assert history.last_prompt_tokens() == 7
    assert history.export() == [{"role": "user", "content": "Hello   there,\nhow are you"},
                                {"role": "assistant", "content": "fine"}]
    summary = summarize("id1", records)
    assert (summary.id, summary.model, summary.turns, summary.first_words) == (
        "id1", "b", 2, "Hello there, how are you")
