"""The rules the OpenAPI document lists under `x-salestrack-rules`: rules
between fields or parameters that JSON Schema cannot say. Schemathesis
generates each request from the schema alone; these hooks make the requests
it calls valid also keep those rules, so that a `400` for one of them is not
reported as a valid request refused. They touch only values that are valid
by the schema, so the negative phase's invalid values are left as drawn.
"""

import re
from decimal import Decimal

import schemathesis

MONEY = re.compile(r"^(0|[1-9][0-9]{0,13})(\.[0-9]{1,4})?$")
LIMIT = Decimal(10) ** 14
MAX_QUANTITY = 2**31 - 1


def _money(value):
    """The amount of a schema-valid money value, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return Decimal(value) if MONEY.match(value) else None
    if isinstance(value, (int, float)):
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if 0 <= d < LIMIT and d == d.quantize(Decimal("0.0001")):
            return d
    return None


def _quantity(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if 1 <= value <= MAX_QUANTITY else None


def _plain(d):
    return format(d.normalize(), "f")


@schemathesis.hook
def map_body(ctx, body):
    """POST /orders: discounts <= amount * quantity and
    subtotal = amount * quantity - discounts."""
    op = ctx.operation
    if op is None or op.method.upper() != "POST" or op.path != "/orders":
        return body
    if not isinstance(body, dict):
        return body
    amount = _money(body.get("amount"))
    quantity = _quantity(body.get("quantity"))
    subtotal = _money(body.get("subtotal"))
    given_discounts = body.get("discounts")
    discounts = Decimal(0) if given_discounts is None else _money(given_discounts)
    if None in (amount, quantity, subtotal, discounts):
        return body
    if amount * quantity >= LIMIT:
        quantity = 1
        body["quantity"] = 1
    gross = amount * quantity
    if discounts > gross:
        discounts = gross
        body["discounts"] = _plain(gross)
    body["subtotal"] = _plain(gross - discounts)
    return body


@schemathesis.hook
def filter_query(ctx, query):
    """GET /carts/{cart_id}: at most one of as_of_version and as_of.
    GET /reports/sales: from < to."""
    op = ctx.operation
    if op is None or not query:
        return True
    if op.path == "/carts/{cart_id}":
        return not ("as_of_version" in query and "as_of" in query)
    if op.path == "/reports/sales" and "from" in query and "to" in query:
        return _report_bound(query["from"], False) < _report_bound(query["to"], True)
    return True


def _report_bound(text, inclusive_end):
    """As the server reads a report bound; unreadable ones compare as equal
    to nothing (kept: the server refuses them anyway)."""
    from datetime import datetime, timedelta, timezone

    try:
        if isinstance(text, str) and len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) if inclusive_end else day
        return datetime.fromisoformat(str(text).replace("z", "Z").replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return datetime.min.replace(tzinfo=timezone.utc) if not inclusive_end else datetime.max.replace(tzinfo=timezone.utc)
