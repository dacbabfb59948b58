"""A second event mix, for testing detection on habits and attacks the model was not tuned on.

Same contract and labels as ``EventGenerator``; different people and different attackers:

- Habits: two in five users commute between two neighbouring countries (changing country
  only after six hours without a session, at ground speed); users carry two or three devices and three to six
  mobile IP addresses; evenings, not afternoons; quicker clicks and longer sessions; baskets
  of one to six items; and one user in thirty runs a legitimate integration that calls the
  API from ``python-requests`` at a steady pace.
- Attacks: credential stuffing from a fresh IP per attempt with a browser's user agent;
  impossible travel that buys instead of browsing; exfiltration low and slow (many
  5-40 MB API calls over a quarter of an hour); high-value purchases without a cart; bots
  behind headless Chrome with jittered timing from a cloud address; account takeover without a password reset, from a new device and IP in the
  user's own country, cashed in within minutes.
"""

import random
from datetime import timedelta

from anomaly_assets.devtools.generator import (
    ATTACK_COUNTRIES,
    ATTACK_OCTETS,
    COUNTRIES,
    USER_AGENTS,
    EventGenerator,
    UserProfile,
    random_ip,
)

#: Neighbouring countries people commute between.
NEIGHBOURS = {
    "DE": ("FR", "NL", "SE"),
    "FR": ("DE", "ES", "GB"),
    "NL": ("DE",),
    "ES": ("FR",),
    "GB": ("FR",),
    "SE": ("DE",),
    "US": ("CA",),
    "CA": ("US",),
}
#: Far from every home country: where impossible travel lands when not an attack country.
FAR = ("AU", "BR", "JP", "IN", "ZA", "AR")
#: A browser none of the users own: the takeover's new device.
TAKEOVER_AGENT = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
)
#: First octet of the cloud addresses bots run from.
CLOUD_OCTET = 52
HEADLESS = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/126.0 Safari/537.36"
INTEGRATION = "python-requests/2.32.3"
ACTIONS = (
    ("page_view", 35),
    ("search", 30),
    ("add_to_cart", 10),
    ("purchase", 4),
    ("file_download", 5),
    ("api_call", 16),
)
SWITCH_AFTER = timedelta(hours=6)


class CommuterScenario(EventGenerator):
    """``EventGenerator``'s stream with the habits and attacks of the module docstring."""

    def _make_users(self, rng: random.Random, n_users: int) -> list[UserProfile]:
        countries = list(COUNTRIES)
        weights = [COUNTRIES[c][0] for c in countries]
        users, self._second, self._integrators = [], {}, set()
        for i in range(n_users):
            country = rng.choices(countries, weights)[0]
            kinds = rng.sample(("desktop", "mobile", "tablet"), rng.choice((2, 2, 3)))
            octet = COUNTRIES[country][2]
            user = UserProfile(
                user_id=f"c{i:06d}",
                country=country,
                devices=tuple((d, rng.choice(USER_AGENTS[d])) for d in kinds),
                ips=tuple(random_ip(rng, octet) for _ in range(rng.randint(3, 6))),
                active_hour=int(rng.gauss(21, 3)) % 24,
                spend=round(2.71828 ** rng.gauss(3.2, 1.0), 2),
                download_bytes=int(2.71828 ** rng.gauss(14, 1.2)),
                activity=rng.paretovariate(1.5),
            )
            if country in NEIGHBOURS and rng.random() < 0.4:
                second = rng.choice(NEIGHBOURS[country])
                ips = tuple(random_ip(rng, COUNTRIES[second][2]) for _ in range(2))
                self._second[user.user_id] = (second, ips)
            if rng.random() < 1 / 30:
                self._integrators.add(user.user_id)
            users.append(user)
        self._where = {}  # user_id -> (country, ips, time of the last session)
        return users

    def _place(self, user: UserProfile) -> tuple[str, tuple[str, ...]]:
        """Where the user is now: home, or the second country. A commuter changes country
        only after six hours without a session, so every change is at ground speed."""
        here = self._where.get(user.user_id)
        if here and self.clock - here[2] < SWITCH_AFTER:
            country, ips = here[0], here[1]
        elif user.user_id in self._second and self.rng.random() < 0.35:
            country, ips = self._second[user.user_id]
        else:
            country, ips = user.country, user.ips
        self._where[user.user_id] = (country, ips, self.clock)
        return country, ips

    def _session(self, user: UserProfile) -> list[tuple[dict, None]]:
        rng = self.rng
        ts = self.clock
        sid = self._uuid()
        country, ips = self._place(user)
        ip = rng.choice(ips)
        out = []
        if user.user_id in self._integrators and rng.random() < 0.5:
            agent = ("desktop", INTEGRATION)
            for _ in range(rng.randint(10, 40)):
                ts += timedelta(seconds=rng.uniform(20, 90))
                size = int(user.download_bytes * rng.lognormvariate(-1, 0.4))
                out.append(
                    (
                        self._event(
                            user,
                            "api_call",
                            ts,
                            sid,
                            ip,
                            country,
                            agent,
                            bytes_transferred=max(size, 200),
                            duration_ms=rng.randint(30, 400),
                        ),
                        None,
                    )
                )
            return out
        device = rng.choice(user.devices)

        def ev(kind, **fields):
            return self._event(user, kind, ts, sid, ip, country, device, **fields), None

        if rng.random() < 0.06:
            out.append(ev("login", success=False, duration_ms=rng.randint(200, 900)))
            ts += timedelta(seconds=rng.uniform(2, 15))
        out.append(ev("login", success=True, duration_ms=rng.randint(200, 900)))
        names, weights = zip(*ACTIONS)
        for _ in range(rng.randint(1, 25)):
            ts += timedelta(seconds=rng.expovariate(1 / 10))
            action = rng.choices(names, weights)[0]
            fields = self._action_fields(user, action)
            if action in ("purchase", "add_to_cart"):
                fields["items"] = rng.randint(1, 6)
            if action == "purchase":
                fields["amount"] = round(user.spend * rng.lognormvariate(0, 0.6), 2)
            out.append(ev(action, **fields))
        if rng.random() < 0.4:
            ts += timedelta(seconds=rng.expovariate(1 / 20))
            out.append(ev("logout", duration_ms=rng.randint(50, 300)))
        return out

    def _episode(self, kind: str, user: UserProfile) -> list[tuple[dict, bool]]:
        rng = self.rng
        ts = self.clock
        sid = self._uuid()
        home, ips = self._place(user)
        home_ip, home_device = rng.choice(ips), rng.choice(user.devices)
        attack_country = rng.choice(ATTACK_COUNTRIES)
        out: list[tuple[dict, bool]] = []

        def add(event_type, ip, country, device, labelled=True, **fields):
            event = self._event(
                user, event_type, ts, sid, ip, country, device, **fields
            )
            out.append((event, labelled))

        if kind == "credential_stuffing":
            agent = ("desktop", rng.choice(USER_AGENTS["desktop"]))
            for _ in range(rng.randint(10, 30)):
                ts += timedelta(seconds=rng.uniform(1, 8))
                ip = random_ip(rng, ATTACK_OCTETS[attack_country])
                add("login", ip, attack_country, agent, success=False, duration_ms=300)
        elif kind == "impossible_travel":
            add(
                "login",
                home_ip,
                home,
                home_device,
                False,
                success=True,
                duration_ms=400,
            )
            ts += timedelta(minutes=rng.uniform(10, 90))
            far = rng.choice(FAR + ATTACK_COUNTRIES)
            octet = ATTACK_OCTETS.get(far) or COUNTRIES.get(far, (0, "", 200))[2]
            ip, device = (
                random_ip(rng, octet),
                ("mobile", rng.choice(USER_AGENTS["mobile"])),
            )
            add(
                "login",
                ip,
                far,
                device,
                success=True,
                duration_ms=rng.randint(200, 900),
            )
            for _ in range(rng.randint(1, 3)):
                ts += timedelta(seconds=rng.uniform(20, 120))
                action = rng.choice(("purchase", "search"))
                add(action, ip, far, device, **self._action_fields(user, action))
        elif kind == "data_exfiltration":
            for _ in range(rng.randint(20, 50)):
                ts += timedelta(seconds=rng.uniform(10, 40))
                add(
                    "api_call",
                    home_ip,
                    home,
                    home_device,
                    bytes_transferred=rng.randint(5, 40) * 1024 * 1024,
                    duration_ms=rng.randint(2000, 20000),
                )
        elif kind == "high_value_purchase":
            add(
                "purchase",
                home_ip,
                home,
                home_device,
                amount=round(user.spend * rng.uniform(10, 40), 2),
                items=rng.randint(1, 3),
                duration_ms=rng.randint(800, 6000),
            )
        elif kind == "bot_activity":
            ip = random_ip(rng, CLOUD_OCTET)
            for _ in range(rng.randint(20, 50)):
                ts += timedelta(seconds=rng.uniform(0.3, 3.0))
                add(
                    rng.choice(("page_view", "search")),
                    ip,
                    home,
                    ("desktop", HEADLESS),
                    duration_ms=rng.randint(20, 300),
                )
        elif kind == "account_takeover":
            ip = random_ip(rng, COUNTRIES.get(home, (0, "", 200))[2])
            device = ("desktop", TAKEOVER_AGENT)
            add("login", ip, home, device, success=True, duration_ms=500)
            ts += timedelta(minutes=rng.uniform(1, 5))
            if rng.random() < 0.5:
                add(
                    "file_download",
                    ip,
                    home,
                    device,
                    bytes_transferred=rng.randint(20, 200) * 1024 * 1024,
                    duration_ms=rng.randint(5000, 30000),
                )
            else:
                add(
                    "purchase",
                    ip,
                    home,
                    device,
                    amount=round(user.spend * rng.uniform(3, 10), 2),
                    items=rng.randint(1, 4),
                    duration_ms=rng.randint(800, 6000),
                )
        else:  # pragma: no cover - guarded in __init__
            raise ValueError(kind)
        return out
