"""A third event mix: a business software portal, where attacks come as campaigns and
ordinary traffic has bursts of its own.

Written from its own description, not from the two other mixes; same contract and labels.

- Users: employees of organisations (3 to 40 seats each). An organisation shares one or two
  office addresses and a working day in its own time zone; each employee has a role
  (viewer, analyst, buyer) that sets what they do, one work laptop and sometimes a phone,
  and a home address for the evenings. Every organisation has a service account that
  runs its integration from a script.
- Benign bursts, unlabelled, that look like campaigns: a marketing push (every eight hours
  of stream time, for an hour: buyers order bundles of many seats at a discount), the
  batch export three times a day (service accounts read data fast from their script) and a release
  (everyone's browser comes back under a new version for an hour, so every device is new).
- Campaigns, labelled, that fill most of the anomaly share (``CAMPAIGN_WEIGHTS``): a bot
  farm scraping through taken-over accounts from a handful of cloud addresses, half of it
  behind an ordinary browser's user agent; a stuffing wave through residential proxies in
  the victims' own countries, a few tries per account; insiders of one organisation
  exporting three to eight times their usual reports, slowly, from the office.
- Lone attacks, rarer: take-over through a password reset from a VPN on a new phone,
  seat purchases thirty times the buyer's usual, a login from a far country with the
  user's own laptop while the office session is still open.
"""

import math
import random
from datetime import timedelta

from anomaly_assets.devtools.generator import (
    COUNTRIES,
    USER_AGENTS,
    EventGenerator,
    UserProfile,
    random_ip,
)

#: Working-day start, hours UTC, of each country's offices.
OFFICE_START_UTC = {
    "US": 14,
    "CA": 14,
    "BR": 12,
    "GB": 8,
    "ES": 7,
    "FR": 7,
    "DE": 7,
    "NL": 7,
    "SE": 7,
    "IN": 3,
    "JP": 0,
    "AU": 22,
}
ROLES = {"viewer": 0.6, "analyst": 0.25, "buyer": 0.15}
#: In-session actions per role, with weights.
ROLE_ACTIONS = {
    "viewer": (("page_view", 60), ("search", 30), ("file_download", 10)),
    "analyst": (
        ("search", 30),
        ("page_view", 25),
        ("file_download", 30),
        ("api_call", 15),
    ),
    "buyer": (("page_view", 40), ("search", 20), ("add_to_cart", 25), ("purchase", 15)),
}
#: Share of the anomaly budget per type: the three campaigns fill most of it.
CAMPAIGN_WEIGHTS = {
    "bot_activity": 0.35,
    "credential_stuffing": 0.30,
    "data_exfiltration": 0.20,
    "account_takeover": 0.05,
    "high_value_purchase": 0.05,
    "impossible_travel": 0.05,
}
SERVICE_AGENT = "acme-sync/3.2 (+python-requests/2.31)"
NEW_RELEASE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
FARM_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) puppeteer",
    USER_AGENTS["desktop"][0],
)
#: First octets: the bot farm's cloud, the take-over's VPN exit.
FARM_OCTET, VPN_OCTET = 34, 185
#: Far from each continent's offices: where the travelling login comes from.
FAR = {
    "NA": ("JP", "IN", "AU"),
    "SA": ("JP", "IN", "SE"),
    "EU": ("AU", "BR", "JP"),
    "AS": ("US", "BR", "GB"),
    "OC": ("US", "GB", "DE"),
}
#: Stream hours (mod 8) of the benign bursts.
MARKETING, BATCH, RELEASE = 1, 3, 5


class CampaignScenario(EventGenerator):
    """The portal of the module docstring."""

    def _make_users(self, rng: random.Random, n_users: int) -> list[UserProfile]:
        countries = [c for c in COUNTRIES if c in OFFICE_START_UTC]
        weights = [COUNTRIES[c][0] for c in countries]
        users, self._role, self._org, self._home = [], {}, {}, {}
        self._service, self._members = {}, {}
        org = 0
        while len(users) < n_users:
            country = rng.choices(countries, weights)[0]
            octet = COUNTRIES[country][2]
            offices = tuple(random_ip(rng, octet) for _ in range(rng.choice((1, 2))))
            seats = min(rng.randint(3, 40), n_users - len(users))
            tier = math.exp(rng.gauss(5.0, 0.8))  # a seat's price, median ~150
            members = []
            for _ in range(seats):
                role = rng.choices(list(ROLES), list(ROLES.values()))[0]
                laptop = ("desktop", rng.choice(USER_AGENTS["desktop"]))
                phone = ("mobile", rng.choice(USER_AGENTS["mobile"]))
                user = UserProfile(
                    user_id=f"o{org:03d}-{len(members):02d}",
                    country=country,
                    devices=(laptop, phone) if rng.random() < 0.3 else (laptop,),
                    ips=offices,
                    active_hour=(OFFICE_START_UTC[country] + rng.randint(1, 7)) % 24,
                    spend=round(tier * rng.uniform(0.8, 1.2), 2),
                    download_bytes=int(
                        math.exp(rng.gauss(15 if role == "analyst" else 12.5, 0.7))
                    ),
                    activity=rng.lognormvariate(0, 0.6),
                )
                self._role[user.user_id] = role
                self._org[user.user_id] = org
                self._home[user.user_id] = random_ip(rng, octet)
                members.append(user)
            service = UserProfile(
                user_id=f"o{org:03d}-svc",
                country=country,
                devices=(("desktop", SERVICE_AGENT),),
                ips=offices[:1],
                active_hour=2,
                spend=0.0,
                download_bytes=int(math.exp(rng.gauss(16, 0.5))),
                activity=0.0,
            )
            self._service[org] = service
            self._members[org] = members
            users.extend(members)
            org += 1
        # The insiders: the analysts (or, failing those, anyone) of one mid-sized organisation.
        big = [o for o, m in self._members.items() if len(m) >= 8] or list(
            self._members
        )
        chosen = self._members[rng.choice(big)]
        analysts = [u for u in chosen if self._role[u.user_id] == "analyst"]
        self._insiders = (analysts or chosen)[:5]
        self._farm = tuple(random_ip(rng, FARM_OCTET) for _ in range(6))
        return users

    def _next_kind(self) -> str:
        """The type furthest below its share of the labelled events so far."""
        total = sum(self.per_type.values()) + 1
        return min(
            self.per_type,
            key=lambda t: (self.per_type[t] / total - CAMPAIGN_WEIGHTS[t], t),
        )

    def _burst(self) -> int | None:
        hour = self.clock.hour % 8
        return hour if hour in (MARKETING, BATCH, RELEASE) else None

    def _session(self, user: UserProfile) -> list[tuple[dict, None]]:
        rng, burst = self.rng, self._burst()
        if burst == BATCH and rng.random() < 0.08:
            return self._batch_job(self._service[self._org[user.user_id]])
        ts, sid = self.clock, self._uuid()
        role = self._role[user.user_id]
        at_office = (self.clock.hour - OFFICE_START_UTC[user.country]) % 24 < 9
        ip = rng.choice(user.ips) if at_office else self._home[user.user_id]
        device = user.devices[0] if at_office else rng.choice(user.devices)
        if burst == RELEASE and device[0] == "desktop":
            device = ("desktop", NEW_RELEASE)
        out = []

        def ev(kind, **fields):
            event = self._event(user, kind, ts, sid, ip, user.country, device, **fields)
            out.append((event, None))

        if rng.random() < 0.02:
            ev("login", success=False, duration_ms=rng.randint(300, 1200))
            ts += timedelta(seconds=rng.uniform(4, 30))
        ev("login", success=True, duration_ms=rng.randint(300, 1200))
        names, weights = zip(*ROLE_ACTIONS[role])
        for _ in range(rng.randint(2, 18)):
            ts += timedelta(seconds=rng.expovariate(1 / 40))
            action = rng.choices(names, weights)[0]
            if burst == MARKETING and role == "buyer" and rng.random() < 0.4:
                items = rng.randint(5, 25)
                ev("add_to_cart", items=items, duration_ms=rng.randint(400, 2500))
                ts += timedelta(seconds=rng.uniform(10, 60))
                amount = round(user.spend * items * rng.uniform(0.5, 0.8), 2)
                ev(
                    "purchase",
                    amount=amount,
                    items=items,
                    duration_ms=rng.randint(900, 5000),
                )
                continue
            fields = self._action_fields(user, action)
            if action == "purchase":
                fields["items"] = rng.randint(1, 5)
                fields["amount"] = round(
                    user.spend * fields["items"] * rng.uniform(0.9, 1.1), 2
                )
            ev(action, **fields)
        if rng.random() < 0.3:
            ts += timedelta(seconds=rng.expovariate(1 / 60))
            ev("logout", duration_ms=rng.randint(50, 300))
        return out

    def _batch_job(self, service: UserProfile) -> list[tuple[dict, None]]:
        """The batch export: a steady, fast beat of large API reads from the script."""
        rng, ts, sid = self.rng, self.clock, self._uuid()
        out = []
        for _ in range(rng.randint(15, 40)):
            ts += timedelta(seconds=rng.uniform(0.5, 2.0))
            size = int(service.download_bytes * rng.lognormvariate(0, 0.3))
            event = self._event(
                service,
                "api_call",
                ts,
                sid,
                service.ips[0],
                service.country,
                service.devices[0],
                bytes_transferred=size,
                duration_ms=rng.randint(100, 900),
            )
            out.append((event, None))
        return out

    def _episode(self, kind: str, user: UserProfile) -> list[tuple[dict, bool]]:
        if kind == "data_exfiltration":
            user = self.rng.choice(self._insiders)
        elif (
            kind == "high_value_purchase"
        ):  # a buyer of the organisation orders the seats
            members = self._members[self._org[user.user_id]]
            buyers = [u for u in members if self._role[u.user_id] == "buyer"]
            user = self.rng.choice(buyers) if buyers else user
        rng, ts, sid = self.rng, self.clock, self._uuid()
        office, laptop = rng.choice(user.ips), user.devices[0]
        out: list[tuple[dict, bool]] = []

        def add(event_type, ip, country, device, labelled=True, **fields):
            event = self._event(
                user, event_type, ts, sid, ip, country, device, **fields
            )
            out.append((event, labelled))

        if kind == "bot_activity":
            ip, agent = rng.choice(self._farm), ("desktop", rng.choice(FARM_AGENTS))
            for _ in range(rng.randint(15, 40)):
                ts += timedelta(seconds=rng.uniform(0.5, 2.0))
                add(
                    rng.choice(("page_view", "search")),
                    ip,
                    "US",
                    agent,
                    duration_ms=rng.randint(40, 250),
                )
        elif kind == "credential_stuffing":
            agent = ("desktop", rng.choice(USER_AGENTS["desktop"]))
            for _ in range(rng.randint(4, 9)):
                ts += timedelta(seconds=rng.uniform(2, 10))
                ip = random_ip(rng, COUNTRIES[user.country][2])
                add(
                    "login",
                    ip,
                    user.country,
                    agent,
                    success=False,
                    duration_ms=rng.randint(150, 600),
                )
        elif kind == "data_exfiltration":
            for _ in range(rng.randint(8, 20)):
                ts += timedelta(seconds=rng.uniform(30, 120))
                size = int(user.download_bytes * rng.uniform(3, 8))
                add(
                    rng.choice(("file_download", "api_call")),
                    office,
                    user.country,
                    laptop,
                    bytes_transferred=size,
                    duration_ms=rng.randint(2000, 15000),
                )
        elif kind == "account_takeover":
            ip = random_ip(rng, VPN_OCTET)
            # A phone the user never used: the attacker's, not theirs.
            phone = (
                "mobile",
                rng.choice(
                    [
                        a
                        for a in USER_AGENTS["mobile"]
                        if ("mobile", a) not in user.devices
                    ]
                ),
            )
            add(
                "password_reset",
                ip,
                user.country,
                phone,
                duration_ms=rng.randint(300, 1500),
            )
            ts += timedelta(seconds=rng.uniform(30, 180))
            add("login", ip, user.country, phone, success=True, duration_ms=400)
            ts += timedelta(seconds=rng.uniform(20, 90))
            add(
                "file_download",
                ip,
                user.country,
                phone,
                bytes_transferred=int(user.download_bytes * rng.uniform(4, 10)),
                duration_ms=rng.randint(3000, 20000),
            )
        elif kind == "high_value_purchase":
            items = rng.randint(20, 60)
            add(
                "add_to_cart",
                office,
                user.country,
                laptop,
                False,
                items=items,
                duration_ms=rng.randint(400, 2500),
            )
            ts += timedelta(seconds=rng.uniform(20, 90))
            add(
                "purchase",
                office,
                user.country,
                laptop,
                amount=round(user.spend * items * rng.uniform(1.0, 1.5), 2),
                items=items,
                duration_ms=rng.randint(900, 5000),
            )
        elif kind == "impossible_travel":
            add(
                "login",
                office,
                user.country,
                laptop,
                False,
                success=True,
                duration_ms=500,
            )
            ts += timedelta(minutes=rng.uniform(20, 60))
            far = rng.choice(FAR[COUNTRIES[user.country][1]])
            ip = random_ip(rng, COUNTRIES[far][2])
            add(
                "login",
                ip,
                far,
                laptop,
                success=True,
                duration_ms=rng.randint(300, 900),
            )
            for _ in range(rng.randint(1, 3)):
                ts += timedelta(seconds=rng.uniform(10, 60))
                add("search", ip, far, laptop, duration_ms=rng.randint(500, 8000))
        else:  # pragma: no cover - guarded in __init__
            raise ValueError(kind)
        return out
