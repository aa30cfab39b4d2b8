"""A seeded synthetic shop catalogue whose text really carries the signal.

Each product gets a title and description built from words that *drive* its demand, so a
model that reads text can learn what a text-blind model cannot:

- the **theme** word sets the yearly season: "Christmas" products peak in late November and
  December, "Garden" products in early summer, "Valentine" products in early February, the
  rest are flat;
- the **tier** word sets level and price sensitivity: "Bestselling" items sell about 3x more,
  "Luxury" items sell less at a higher price and barely react to discounts, "Budget" items
  react strongly to price;
- the **material** sets the price.

Sales are negative-binomial draws around ``level x season x trend x price effect x promotion
uplift x launch ramp``; low-level products are naturally intermittent. About a fifth of the
catalogue launches during the span (new products). :attr:`SyntheticCatalogue.truth` keeps the
latent parameters and the informative words, for tests and explanations.

``events=True`` multiplies demand around a few dated events with known effects
(:data:`SYNTHETIC_EVENTS`: a summer sale for every item, 11.11 for the Kitchen category, a
one-off clearance) and returns them as :attr:`SyntheticCatalogue.events`, an events file for
:func:`salesformer.data.calendars.add_calendar`. It is off by default: the demo catalogue
does not change, and only the event weeks' sales differ from the catalogue without events
(they are drawn, around the raised mean, from a second generator seeded from ``seed``).
``stockout_rate > 0`` (off by default: the default catalogue is unchanged) empties shelves:
episodes of 1 to 3 weeks during which an item sells only part of its demand (it ran out early
in the week), marked ``in_stock = False`` in the sales frame; the true demand of every week
is kept aside in :attr:`SyntheticCatalogue.demand`, so forecasts can be scored against it.
The stock-outs use their own random stream: the demand is the same with or without them.

``lang="zh"`` writes the same catalogue (same seed, same sales) in Chinese: titles,
descriptions, categories and promotion copy are built from the Chinese words for the same
theme, tier, material and product, and ``truth.informative_words`` lists those Chinese words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES, TEXT, Panel, validate_panel
from salesformer.data.text import item_text
from salesformer.errors import ConfigError

THEMES = {
    # name: (peak week of year, peak width in weeks, peak multiplier)
    "Christmas": (50, 4.0, 6.0),
    "Garden": (24, 6.0, 3.0),
    "Valentine": (6, 1.5, 5.0),
    "Everyday": (0, 1.0, 1.0),
}
TIERS = {
    # name: (level multiplier, price multiplier, price elasticity)
    "Bestselling": (3.0, 1.0, -1.5),
    "Classic": (1.0, 1.0, -1.5),
    "Luxury": (0.45, 2.5, -0.4),
    "Budget": (1.3, 0.6, -3.0),
}
MATERIALS = {"Ceramic": 1.0, "Wooden": 1.2, "Glass": 1.4, "Cotton": 0.8, "Metal": 1.1}
PRODUCTS = {
    # product noun: (category, base price in currency units)
    "Mug": ("Kitchen", 6.0),
    "Tea Towel": ("Kitchen", 4.0),
    "Candle Holder": ("Home Decor", 8.0),
    "Photo Frame": ("Home Decor", 9.0),
    "Tote Bag": ("Bags", 7.0),
    "Lunch Box": ("Kitchen", 10.0),
    "Notebook": ("Stationery", 3.5),
    "Wall Clock": ("Home Decor", 18.0),
    "Plant Pot": ("Garden", 12.0),
    "Gift Box": ("Gifts", 5.0),
}
THEME_WORDS = {
    "Christmas": ("Christmas", "for festive holiday days"),
    "Garden": ("Garden", "for sunny outdoor summer days"),
    "Valentine": ("Valentine Heart", "for a romantic love gift"),
    "Everyday": ("", "for everyday use"),
}
TIER_PHRASES = {
    "Bestselling": "Our bestselling favourite, loved by thousands of customers.",
    "Classic": "A classic design that suits any home.",
    "Luxury": "Luxury hand-finished piece in a premium gift box.",
    "Budget": "Budget friendly value pick at a low price.",
}
PROMO_COPY = (
    "Save {pct}% this week only",
    "Limited offer: {pct}% off",
    "Flash sale, {pct}% off while stocks last",
)
LANGUAGES = ("en", "zh")
#: Events of ``generate_catalogue(events=True)``: (date, name, days, scope, demand multiplier
#: on the event's days). A week holding d event days has its mean multiplied by
#: ``1 + (multiplier - 1) * d / 7``.
SYNTHETIC_EVENTS = (
    ("07-01", "summer_sale", 7, "", 2.0),
    ("11-11", "singles_day", 1, "category:Kitchen", 8.0),
    ("2023-03-13", "clearance", 7, "", 1.5),
)
#: Chinese words for the latent words above (the same signal, written in Chinese).
ZH_WORDS = {
    "Christmas": "圣诞",
    "Garden": "花园",
    "Valentine": "情人节",
    "Heart": "爱心",
    "Bestselling": "热销",
    "Classic": "经典",
    "Luxury": "奢华",
    "Budget": "特惠",
    "Ceramic": "陶瓷",
    "Wooden": "实木",
    "Glass": "玻璃",
    "Cotton": "纯棉",
    "Metal": "金属",
    "Mug": "马克杯",
    "Tea Towel": "茶巾",
    "Candle Holder": "烛台",
    "Photo Frame": "相框",
    "Tote Bag": "帆布袋",
    "Lunch Box": "饭盒",
    "Notebook": "笔记本",
    "Wall Clock": "挂钟",
    "Plant Pot": "花盆",
    "Gift Box": "礼盒",
    "Kitchen": "厨房用品",
    "Home Decor": "家居装饰",
    "Bags": "箱包",
    "Stationery": "文具",
    "Gifts": "礼品",
}
ZH_THEME_PHRASES = {
    "Christmas": "适合欢度圣诞佳节",
    "Garden": "适合阳光明媚的夏日户外",
    "Valentine": "是浪漫的爱情礼物",
    "Everyday": "适合日常使用",
}
ZH_TIER_PHRASES = {
    "Bestselling": "人气热销款，深受数千顾客喜爱。",
    "Classic": "经典设计，百搭各种家居风格。",
    "Luxury": "奢华手工精制，配高档礼盒包装。",
    "Budget": "特惠超值之选，价格实惠。",
}
ZH_PROMO_COPY = (
    "本周限时立减{pct}%",
    "限时优惠：立减{pct}%",
    "闪购特卖，立减{pct}%，售完即止",
)


@dataclass(frozen=True)
class SyntheticCatalogue:
    """Generated frames: ``sales`` (the panel), ``items`` and the latent ``truth`` per item;
    with stock-outs, ``demand`` (``item_id, date, demand``: what customers wanted)."""

    sales: pd.DataFrame
    items: pd.DataFrame
    truth: pd.DataFrame
    events: pd.DataFrame | None = None
    demand: pd.DataFrame | None = None

    def panel(self) -> Panel:
        """The catalogue as a validated :class:`Panel` (with its events' covariates, if any)."""
        panel = validate_panel(self.sales, self.items, freq="W-MON")
        if self.events is None:
            return panel
        from salesformer.data.calendars import add_calendar

        return add_calendar(panel, events=self.events)


def _season_curve(weeks_of_year: np.ndarray, theme: str) -> np.ndarray:
    peak, width, height = THEMES[theme]
    if height == 1.0:
        return np.ones_like(weeks_of_year, dtype=float)
    distance = np.abs(weeks_of_year - peak)
    distance = np.minimum(distance, 52 - distance)
    return 1.0 + (height - 1.0) * np.exp(-0.5 * (distance / width) ** 2)


def generate_catalogue(
    n_items: int = 200,
    n_weeks: int = 104,
    start: str = "2022-01-03",
    seed: int = 0,
    new_item_share: float = 0.2,
    promo_rate: float = 0.08,
    lang: str = "en",
    events: bool = False,
    stockout_rate: float = 0.0,
) -> SyntheticCatalogue:
    """Generate a seeded weekly catalogue (weeks start on Monday).

    Args:
        n_items: number of products (>= 1).
        n_weeks: number of weeks (>= 8).
        start: first Monday of the panel.
        seed: random seed; the same seed gives the same catalogue.
        new_item_share: share of products launched during the span.
        promo_rate: share of weeks with a promotion, per product.
        lang: language of the product texts, ``"en"`` or ``"zh"`` (Chinese); the numbers
            do not depend on it.
        events: multiply demand around :data:`SYNTHETIC_EVENTS` (known effects) and return
            them as the catalogue's ``events``; off by default.
        stockout_rate: expected share of item-weeks out of stock, in [0, 0.5]; 0 (default)
            adds no stock-outs and no ``in_stock`` column.
    """
    first = _checked_start(n_items, n_weeks, start, new_item_share, promo_rate, lang)
    if not 0.0 <= stockout_rate <= 0.5:
        raise ConfigError(f"stockout_rate must be in [0, 0.5]; got {stockout_rate}")
    rng = np.random.default_rng(seed)
    event_rng = np.random.default_rng([seed, 18]) if events else None
    dates = pd.date_range(first, periods=n_weeks, freq="W-MON")
    week_of_year = np.asarray(dates.isocalendar().week, dtype=float)

    themes = rng.choice(list(THEMES), size=n_items, p=[0.25, 0.2, 0.15, 0.4])
    tiers = rng.choice(list(TIERS), size=n_items, p=[0.2, 0.4, 0.2, 0.2])
    materials = rng.choice(list(MATERIALS), size=n_items)
    products = rng.choice(list(PRODUCTS), size=n_items)
    base_level = rng.lognormal(mean=1.6, sigma=0.8, size=n_items)
    trend = rng.normal(0.0, 0.004, size=n_items)
    is_new = rng.random(n_items) < new_item_share
    launch = np.where(is_new, rng.integers(8, max(9, n_weeks - 4), size=n_items), 0)

    item_rows, truth_rows, frames = [], [], []
    for i in range(n_items):
        theme, tier, material, product = themes[i], tiers[i], materials[i], products[i]
        _, price0 = PRODUCTS[product]
        level_mult, price_mult, elasticity = TIERS[tier]
        base_price = round(price0 * MATERIALS[material] * price_mult * rng.uniform(0.9, 1.1), 2)
        texts = _item_texts(rng, lang, theme, tier, material, product)
        item_id = f"SKU{i:05d}"
        weeks = np.arange(launch[i], n_weeks)
        frames.append(
            _item_sales(
                rng,
                item_id,
                dates[weeks],
                t=weeks - launch[i],
                ramp_up=bool(is_new[i]),
                base_price=base_price,
                scale=base_level[i] * level_mult,
                season=_season_curve(week_of_year[weeks], theme),
                trend=trend[i],
                elasticity=elasticity,
                promo_rate=promo_rate,
                uplift=event_uplift(dates[weeks], PRODUCTS[product][0]) if events else None,
                event_rng=event_rng,
            )
        )
        words = texts.pop("words")
        launch_date = dates[launch[i]]
        item_rows.append(
            {ITEM_ID: item_id, **texts, "base_price": base_price, "launch_date": launch_date}
        )
        truth = {"theme": theme, "tier": tier, "material": material}
        truth.update(level=base_level[i] * level_mult, elasticity=elasticity, trend=trend[i])
        truth_rows.append({ITEM_ID: item_id, **truth, "informative_words": " ".join(words[:-1])})
    sales_frame = pd.concat(frames, ignore_index=True)
    table = events_table() if events else None
    items, truth = pd.DataFrame(item_rows), pd.DataFrame(truth_rows)
    if stockout_rate == 0.0:
        return SyntheticCatalogue(sales_frame, items, truth, events=table)
    demand = sales_frame[[ITEM_ID, DATE, SALES]].rename(columns={SALES: "demand"})
    stocked = _with_stockouts(sales_frame, stockout_rate, np.random.default_rng([seed, 18]))
    return SyntheticCatalogue(stocked, items, truth, events=table, demand=demand)


def events_table() -> pd.DataFrame:
    """:data:`SYNTHETIC_EVENTS` as an events file (``date, name, days, scope``)."""
    rows = [event[:4] for event in SYNTHETIC_EVENTS]
    return pd.DataFrame(rows, columns=["date", "name", "days", "scope"])


def event_uplift(dates: pd.DatetimeIndex, category: str) -> np.ndarray:
    """The known demand multiplier of each week (starting at ``dates``) for a category."""
    uplift = np.ones(len(dates))
    years = range(dates.min().year - 1, dates.max().year + 1)
    for date, _, days, scope, multiplier in SYNTHETIC_EVENTS:
        if scope and scope != f"category:{category}":
            continue
        starts = (
            [pd.Timestamp(date)]
            if len(date) == 10
            else [pd.Timestamp(f"{y}-{date}") for y in years]
        )
        event_days = pd.DatetimeIndex(
            [s + pd.Timedelta(days=k) for s in starts for k in range(days)]
        )
        week = np.searchsorted(dates.asi8, event_days.asi8, side="right") - 1
        inside = (week >= 0) & (event_days < dates[-1] + pd.Timedelta(days=7))
        counts = np.bincount(week[inside], minlength=len(dates))
        uplift *= 1.0 + (multiplier - 1.0) * counts / 7.0
    return uplift


def _with_stockouts(sales: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """``sales`` with stock-out episodes: ``in_stock`` False and part of the demand sold.

    An episode starts in a week with probability ``rate / 2`` and lasts 1 to 3 weeks (2 on
    average), so about ``rate`` of the weeks are out of stock.
    """
    out_of_stock = np.zeros(len(sales), dtype=bool)
    for positions in sales.groupby(ITEM_ID, sort=False).indices.values():
        starts = np.flatnonzero(rng.random(len(positions)) < rate / 2.0)
        lengths = rng.integers(1, 4, size=len(starts))
        for start, length in zip(starts, lengths, strict=True):
            out_of_stock[positions[start : start + length]] = True
    share_sold = rng.uniform(0.0, 0.5, size=len(sales))
    sold = np.where(out_of_stock, np.floor(sales[SALES].to_numpy() * share_sold), sales[SALES])
    return sales.assign(**{SALES: sold.astype(float), "in_stock": ~out_of_stock})


def _item_sales(
    rng: np.random.Generator,
    item_id: str,
    dates: pd.DatetimeIndex,
    *,
    t: np.ndarray,
    ramp_up: bool,
    base_price: float,
    scale: float,
    season: np.ndarray,
    trend: float,
    elasticity: float,
    promo_rate: float,
    uplift: np.ndarray | None = None,
    event_rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """One product's weekly rows: negative-binomial sales around its level, season, trend,
    price response to random promotions and (for a launch) a ramp-up over ``t`` weeks."""
    on_promo = rng.random(len(t)) < promo_rate
    discount = np.where(on_promo, rng.choice([0.1, 0.2, 0.3, 0.4], size=len(t)), 0.0)
    price = base_price * (1.0 - discount)
    ramp = 1.0 - 0.7 * np.exp(-t / 3.0) if ramp_up else np.ones(len(t))
    mu = scale * season * np.exp(trend * t) * (price / base_price) ** elasticity * ramp
    dispersion = 2.0
    sales = rng.negative_binomial(dispersion, dispersion / (dispersion + mu))
    if uplift is not None and event_rng is not None:  # event weeks only, from their own stream
        raised = mu * uplift
        hit = uplift != 1.0
        sales[hit] = event_rng.negative_binomial(
            dispersion, dispersion / (dispersion + raised[hit])
        )
    return pd.DataFrame(
        {
            ITEM_ID: item_id,
            DATE: dates,
            SALES: sales.astype(float),
            "price": np.round(price, 2),
            "discount": discount,
            "promo": on_promo.astype(float),
        }
    )


def _checked_start(
    n_items: int,
    n_weeks: int,
    start: str,
    new_item_share: float,
    promo_rate: float,
    lang: str,
) -> pd.Timestamp:
    """The first Monday, after checking the settings of :func:`generate_catalogue`."""
    if lang not in LANGUAGES:
        raise ConfigError(f"lang must be one of {', '.join(LANGUAGES)}; got {lang!r}")
    if n_items < 1 or n_weeks < 8:
        raise ConfigError(f"need n_items >= 1 and n_weeks >= 8; got {n_items} and {n_weeks}")
    if not 0.0 <= new_item_share <= 1.0 or not 0.0 <= promo_rate <= 0.5:
        raise ConfigError(
            f"new_item_share must be in [0, 1] and promo_rate in [0, 0.5]; "
            f"got {new_item_share} and {promo_rate}"
        )
    first = pd.Timestamp(start)
    if first.weekday() != 0:
        raise ConfigError(f"start must be a Monday; got {start} ({first.day_name()})")
    return first


def _item_texts(
    rng: np.random.Generator, lang: str, theme: str, tier: str, material: str, product: str
) -> dict[str, Any]:
    """Title, description, category, promotion copy and text of one product, and its words."""
    category = PRODUCTS[product][0]
    theme_title, theme_desc = THEME_WORDS[theme]
    promo = PRODUCTS[product][0] != "Gifts" and rng.random() < 0.5
    copy_index = int(rng.integers(len(PROMO_COPY))) if promo else -1
    words = [w for w in (tier, material, *theme_title.split(), product) if w]
    if lang == "zh":
        words = [ZH_WORDS[w] for w in words]
        title = " ".join(words)
        description = (
            f"{ZH_TIER_PHRASES[tier]}这款{ZH_WORDS[material]}{ZH_WORDS[product]}"
            f"{ZH_THEME_PHRASES[theme]}。"
        )
        promo_copy = ZH_PROMO_COPY[copy_index].format(pct=20) if promo else ""
        text = _zh_item_text(title, description, ZH_WORDS[category], promo_copy)
        category = ZH_WORDS[category]
    else:
        title = " ".join(words)
        description = f"{TIER_PHRASES[tier]} A {material.lower()} {product.lower()} {theme_desc}."
        promo_copy = PROMO_COPY[copy_index].format(pct=20) if promo else ""
        text = item_text(title, description, category, promo_copy)
    return {
        "title": title,
        "description": description,
        "category": category,
        "promotion": promo_copy,
        TEXT: text,
        "words": words,
    }


def _zh_item_text(title: str, description: str, category: str, promotion: str) -> str:
    """The item text template written for Chinese: title, description, category, promotion."""
    parts = [f"{title}。", description, f"类别：{category}。"]
    if promotion:
        parts.append(f"促销：{promotion}")
    return "".join(parts)
