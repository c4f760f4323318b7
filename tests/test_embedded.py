"""The embedded model's one-time conversion refuses a tokenizer that lost its merges."""

import pytest
from conftest import CORPUS

from rpt_trl.experiments.tiny import make_byte_level_tokenizer
from rpt_trl.models import check_converted_tokenizer


def test_a_character_level_conversion_is_refused():
    # A BPE trained with no room for merges splits every word into characters, as the bad conversion does.
    characters = make_byte_level_tokenizer(list(CORPUS), vocab_size=10)
    with pytest.raises(RuntimeError, match="character-level"):
        check_converted_tokenizer(characters)


def test_a_tokenizer_with_merges_passes():
    words = make_byte_level_tokenizer(["Ana buys pencils, more pencils and pencils."] * 50, vocab_size=400)
    assert len(words.tokenize(" pencils")) <= 2
    check_converted_tokenizer(words)
