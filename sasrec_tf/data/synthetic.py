"""Generated interaction logs with real sequential structure, for the demo and the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

LENGTH_DISTRIBUTIONS = ("geometric", "lognormal")
_LOGNORMAL_SIGMA = 1.5


def generate_interactions(
    num_users: int = 2000,
    num_items: int = 500,
    *,
    mean_length: float = 20.0,
    min_length: int = 5,
    max_length: int = 200,
    successors_per_item: int = 2,
    follow_probability: float = 0.7,
    popularity_exponent: float = 1.0,
    length_distribution: str = "geometric",
    seed: int = 0,
) -> pd.DataFrame:
    """A log ``(user, item, timestamp)`` where the next item mostly depends on the current one.

    Every item has ``successors_per_item`` fixed successors. Each user starts at an item drawn
    from a Zipf-like popularity; then, with probability ``follow_probability``, the next item is
    one of the current item's successors, otherwise a fresh popularity draw. A sequential model
    can learn the transitions; a popularity ranking cannot, which is what the demo and the
    learning test rely on. Ids are strings (``"u12"``, ``"i345"``); rows come sorted by time
    across users, and about 5% of consecutive events share a timestamp, as in real logs.

    ``length_distribution`` shapes the history lengths (``min_length`` plus a draw with mean
    ``mean_length - min_length``, clipped at ``max_length``): ``"geometric"`` has a short tail;
    ``"lognormal"`` (σ = 1.5) has the long tail of real logs: at ``mean_length`` 9.3 and
    ``min_length`` 5 (the paper's Amazon Games shape) about 1% of users have 50 or more items.
    """
    if num_items < successors_per_item + 1:
        raise ValueError("num_items must exceed successors_per_item")
    if length_distribution not in LENGTH_DISTRIBUTIONS:
        raise ValueError(f"length_distribution must be one of {LENGTH_DISTRIBUTIONS}, got {length_distribution!r}")
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_items + 1) ** popularity_exponent
    popularity = rng.permutation(popularity / popularity.sum())
    successors = np.stack(
        [rng.choice(num_items, size=successors_per_item, replace=False) for _ in range(num_items)]
    )
    extra = max(mean_length - min_length, 0.0)
    if length_distribution == "geometric":
        draws = rng.geometric(1.0 / (extra + 1.0), size=num_users) - 1
    else:
        sigma = _LOGNORMAL_SIGMA
        draws = np.rint(rng.lognormal(np.log(max(extra, 1e-3)) - sigma**2 / 2, sigma, size=num_users))
    lengths = np.clip(min_length + draws.astype(np.int64), min_length, max_length)
    total = int(lengths.sum())
    follow = rng.random(total) < follow_probability
    fresh = rng.choice(num_items, size=total, p=popularity)
    pick = rng.integers(successors_per_item, size=total)
    items = np.empty(total, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    is_start = np.zeros(total, dtype=bool)
    is_start[starts] = True
    current = 0
    for position in range(total):  # a Markov chain: each step needs the previous one
        if is_start[position] or not follow[position]:
            current = fresh[position]
        else:
            current = successors[current, pick[position]]
        items[position] = current

    users = np.repeat(np.arange(num_users), lengths)
    start_times = rng.integers(1_600_000_000, 1_600_000_000 + 86_400 * 365, size=num_users)
    gaps = rng.integers(1, 86_400, size=total)
    gaps[rng.random(total) < 0.05] = 0  # ties: same-second events
    gaps[starts] = 0
    timestamps = np.repeat(start_times, lengths) + (np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[starts], lengths))
    frame = pd.DataFrame(
        {
            "user": pd.Series(users).map(lambda u: f"u{u}").astype(str),
            "item": pd.Series(items).map(lambda i: f"i{i}").astype(str),
            "timestamp": timestamps.astype(np.int64),
        }
    )
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def generate_attribute_interactions(
    num_users: int = 1000,
    num_items: int = 200,
    *,
    num_categories: int = 40,
    mean_length: float = 12.0,
    min_length: int = 5,
    max_length: int = 200,
    follow_probability: float = 0.9,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A log whose transitions follow item attributes, and its item-feature table.

    Item ``i`` (``"i<i>"``) has category ``c = i % num_categories`` (``"c<c>"``) and a brand
    drawn at random (``"b<0..4>"``, noise). With probability ``follow_probability`` the next item
    is a uniform draw among the items of category ``c + 1`` (mod ``num_categories``), otherwise a
    uniform draw from the catalogue; each user starts at a uniform draw. So a new item's category
    alone says which histories lead to it: what features let a model recommend an item it never
    trained on.

    Returns:
      ``(log, features)``: the log as :func:`generate_interactions` gives it (``user``, ``item``,
      ``timestamp``, sorted by time) and a table ``item``, ``category``, ``tags`` (brand and
      category, ``|``-separated) for every item.
    """
    if num_items < 2 * num_categories:
        raise ValueError("num_items must be at least 2 * num_categories")
    rng = np.random.default_rng(seed)
    category = np.arange(num_items) % num_categories
    members = [np.flatnonzero(category == c) for c in range(num_categories)]
    brand = rng.integers(5, size=num_items)
    extra = max(mean_length - min_length, 0.0)
    lengths = np.clip(min_length + rng.geometric(1.0 / (extra + 1.0), size=num_users) - 1, min_length, max_length)
    items = []
    for length in lengths:
        current = int(rng.integers(num_items))
        sequence = [current]
        for _ in range(int(length) - 1):
            if rng.random() < follow_probability:
                group = members[(category[current] + 1) % num_categories]
                current = int(group[rng.integers(len(group))])
            else:
                current = int(rng.integers(num_items))
            sequence.append(current)
        items.append(sequence)
    users = np.repeat(np.arange(num_users), lengths)
    flat = np.concatenate(items)
    start_times = rng.integers(1_600_000_000, 1_600_000_000 + 86_400 * 365, size=num_users)
    offsets = np.concatenate([np.arange(length) for length in lengths]) * 60
    log = pd.DataFrame({"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in flat],
                        "timestamp": (np.repeat(start_times, lengths) + offsets).astype(np.int64)})
    features = pd.DataFrame({"item": [f"i{i}" for i in range(num_items)],
                             "category": [f"c{c}" for c in category],
                             "tags": [f"b{b}|c{c}" for b, c in zip(brand, category)]})
    return log.sort_values("timestamp", kind="stable").reset_index(drop=True), features
