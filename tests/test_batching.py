"""Length-bucketed batches (trainer/batching.py): by count of examples, or filled to a number of tokens."""

import torch

from trainer.batching import bucketed_batches


def test_batches_by_count_hold_batch_size_examples_each_example_once():
    torch.manual_seed(0)
    batches = bucketed_batches([3, 9, 4, 1, 7, 2, 8], batch_size=3, shuffle=True)
    assert sorted(len(batch) for batch in batches) == [1, 3, 3]
    assert sorted(index for batch in batches for index in batch) == list(range(7))


def test_batches_by_tokens_hold_many_short_examples_and_few_long_ones():
    torch.manual_seed(0)
    lengths = [2] * 40 + [20] * 6
    batches = bucketed_batches(lengths, batch_size=4, shuffle=True, max_tokens=40)
    assert all(max(lengths[i] for i in batch) * len(batch) <= 40 for batch in batches)
    assert sorted(len(batch) for batch in batches) == [2, 2, 2, 20, 20]
    assert sorted(index for batch in batches for index in batch) == list(range(46))


def test_an_example_longer_than_the_token_budget_gets_a_batch_of_its_own():
    assert bucketed_batches([50, 3, 3], batch_size=8, shuffle=False, max_tokens=10) == [[1, 2], [0]]
