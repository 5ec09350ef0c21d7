"""The proxy-group balancing (server/config/proxygroups.py): failover, the load bound, min_online, and
that nothing moves without a reason."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from vigil.server.config.proxygroups import balance, host_limit, online_proxies

NOW = 1_800_000_000.0
DELAY = 60.0


def seen(*silent: int, proxies: tuple[int, ...] = (1, 2, 3)) -> dict[int, float]:
    """Last contact of each proxy: the ones named were last heard from long ago."""
    return {p: NOW - (DELAY * 10 if p in silent else 1) for p in proxies}


def loads(assignment: dict[int, int | None]) -> Counter:
    return Counter(p for p in assignment.values() if p is not None)


def test_online_is_heard_from_within_failover_delay() -> None:
    last = {1: NOW - DELAY, 2: NOW - DELAY - 1, 3: NOW}
    assert online_proxies(last, NOW, DELAY) == [1, 3]


def test_new_hosts_are_spread_evenly() -> None:
    result = balance(seen(), NOW, DELAY, 1, {h: None for h in range(1, 31)})
    assert loads(result.assignment) == {1: 10, 2: 10, 3: 10}
    assert len(result.moved) == 30 and not result.offline


def test_hosts_of_a_silent_proxy_move_to_the_online_ones_and_only_they_move() -> None:
    current = {h: 1 + h % 3 for h in range(30)}  # 10 hosts each on proxies 1, 2, 3
    result = balance(seen(2), NOW, DELAY, 1, current)
    assert result.online == [1, 3]
    assert set(result.moved) == {h for h, p in current.items() if p == 2}
    assert all(to in (1, 3) for _, to in result.moved.values())
    assert loads(result.assignment) == {1: 15, 3: 15}


def test_a_proxy_silent_for_exactly_failover_delay_keeps_its_hosts() -> None:
    current = {1: 1, 2: 2}
    result = balance({1: NOW - DELAY, 2: NOW}, NOW, DELAY, 1, current)
    assert result.moved == {} and result.assignment == current


def test_a_recovered_proxy_takes_no_hosts_back_while_the_others_are_within_the_bound() -> None:
    current = {h: 1 for h in range(10)}  # proxy 2 was down; proxy 1 took everything
    result = balance(seen(proxies=(1, 2)), NOW, DELAY, 1, current)
    assert result.moved == {}  # 10 hosts on 1 is twice the average of 5: allowed, and stable


def test_no_proxy_carries_more_than_twice_the_average_and_the_fewest_hosts_move() -> None:
    current = {h: 1 for h in range(40)}  # 4 proxies, everything on one: average 10, bound 20
    result = balance(seen(proxies=(1, 2, 3, 4)), NOW, DELAY, 1, current)
    assert result.limit == 20
    assert max(loads(result.assignment).values()) <= 20
    assert len(result.moved) == 20  # exactly the excess
    assert all(frm == 1 for frm, _ in result.moved.values())


@pytest.mark.parametrize("seed", range(20))
def test_random_groups_keep_the_bound_and_move_only_what_they_must(seed: int) -> None:
    rng = random.Random(seed)
    proxies = tuple(range(1, rng.randint(2, 6) + 1))
    hosts = rng.randint(0, 200)
    current: dict[int, int | None] = {h: rng.choice((*proxies, None)) for h in range(hosts)}
    silent = tuple(p for p in proxies if rng.random() < 0.3)
    if len(silent) == len(proxies):
        silent = silent[1:]
    result = balance(seen(*silent, proxies=proxies), NOW, DELAY, 1, current)
    online = [p for p in proxies if p not in silent]
    assert result.online == online
    assert set(result.assignment) == set(current)
    assert all(p in online for p in result.assignment.values())
    counts = loads(result.assignment)
    assert max(counts.values(), default=0) <= max(2 * hosts // len(online), -(-hosts // len(online)))
    # Moved: every host without an online proxy, plus exactly the excess of the overloaded proxies.
    before = loads({h: p for h, p in current.items() if p in online})
    excess = sum(max(0, n - result.limit) for n in before.values())
    homeless = sum(1 for p in current.values() if p not in online)
    assert len(result.moved) == homeless + excess
    # Stable: balancing the result again changes nothing.
    assert balance(seen(*silent, proxies=proxies), NOW, DELAY, 1, result.assignment).moved == {}


def test_fewer_online_than_min_online_is_offline_and_keeps_the_assignment() -> None:
    current = {h: 1 + h % 3 for h in range(9)}
    result = balance(seen(1, 2), NOW, DELAY, 2, current)
    assert result.offline and result.online == [3]
    assert result.assignment == current and result.moved == {}
    back = balance(seen(1), NOW, DELAY, 2, current)  # two online again: proxy 1's hosts move
    assert not back.offline and set(back.moved) == {h for h, p in current.items() if p == 1}


def test_no_proxy_online_is_offline_even_with_min_online_zero() -> None:
    current = {1: 1, 2: None}
    result = balance(seen(1, proxies=(1,)), NOW, DELAY, 0, current)
    assert result.offline and result.assignment == current


def test_hosts_of_a_proxy_that_left_the_group_are_reassigned() -> None:
    result = balance(seen(proxies=(1, 2)), NOW, DELAY, 1, {1: 1, 2: 7, 3: 2})
    assert set(result.moved) == {2} and result.moved[2][0] == 7


def test_an_empty_group_is_online_with_nothing_to_do() -> None:
    result = balance(seen(), NOW, DELAY, 1, {})
    assert not result.offline and result.moved == {} and result.assignment == {}


@pytest.mark.parametrize(("hosts", "online", "limit"), [(10, 2, 10), (1, 3, 1), (0, 3, 0), (7, 2, 7), (5, 4, 2)])
def test_host_limit(hosts: int, online: int, limit: int) -> None:
    assert host_limit(hosts, online) == limit
