"""Response de-duplication: once per (message.id, requestId), output grows to the maximum."""

from __future__ import annotations

from contextd.ledger import MemoryLedger, ResponseLedger, ledger_key, response_key
from contextd.models import TokenCounts


def usage(output: int) -> TokenCounts:
    return TokenCounts(input=3, output=output, cache_creation=100, cache_read=1000)


def test_a_response_is_counted_once_with_its_largest_output() -> None:
    ledger = ResponseLedger(MemoryLedger())
    key = response_key("msg_1", "req_1")
    first = ledger.count(key, "s1", usage(10))
    assert first is not None
    assert first.new_response
    assert first.usage == usage(10)
    assert ledger.count(key, "s1", usage(10)) is None
    grown = ledger.count(key, "s1", usage(299))
    assert grown is not None
    assert not grown.new_response
    assert grown.usage == TokenCounts(output=289)
    assert ledger.count(key, "s1", usage(50)) is None  # smaller output later: nothing


def test_a_copy_in_another_session_credits_the_first_session() -> None:
    ledger = ResponseLedger(MemoryLedger())
    key = response_key("msg_1", "req_1")
    ledger.count(key, "original", usage(10))
    assert ledger.count(key, "resumed", usage(10)) is None
    grown = ledger.count(key, "resumed", usage(20))
    assert grown is not None
    assert grown.session_id == "original"


def test_same_message_id_with_another_request_id_is_another_response() -> None:
    ledger = ResponseLedger(MemoryLedger())
    assert ledger.count(response_key("msg_1", "req_1"), "s", usage(1)) is not None
    second = ledger.count(response_key("msg_1", "req_2"), "s", usage(1))
    assert second is not None
    assert second.new_response


def test_lines_without_a_message_id_are_always_counted() -> None:
    ledger = ResponseLedger(MemoryLedger())
    assert response_key(None, "req") is None
    assert ledger.count(None, "s", usage(5)) == ledger.count(None, "s", usage(5))


def test_tool_use_ids_are_sighted_once() -> None:
    ledger = ResponseLedger(MemoryLedger())
    assert ledger.first_sighting("toolu_1", "s")
    assert not ledger.first_sighting("toolu_1", "s")
    assert ledger.first_sighting("toolu_2", "s")


def test_keys_are_stable_signed_64_bit_integers() -> None:
    key = ledger_key("r", "msg_01", "req_01")
    assert key == ledger_key("r", "msg_01", "req_01")
    assert -(2**63) <= key < 2**63
    assert key != ledger_key("r", "msg_01req_01", "")
