"""The smoke command's TOTP codes (the authenticator's, RFC 6238) for users with MFA."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nfse_local.smoke import competencia_today, totp

pytestmark = pytest.mark.unit


def test_totp_is_rfc_6238() -> None:
    # RFC 6238 appendix B, SHA-1: T = 59 s gives 94287082 (8 digits), so 287082 with 6.
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert totp(secret, at=59, digits=8) == "94287082"
    assert totp(secret, at=59) == "287082"
    assert totp(secret, at=1111111109, digits=8) == "07081804"
    # Cognito's secrets come without padding and are typed with spaces by people.
    assert totp("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", at=59) == "287082"


def test_the_competencia_is_this_month_in_sao_paulo() -> None:
    # 02:00 UTC on the 1st is still the previous month in São Paulo (UTC-3).
    assert competencia_today(datetime(2026, 12, 1, 2, 0, tzinfo=UTC)) == "2026-11-01"
    assert competencia_today(datetime(2026, 12, 1, 4, 0, tzinfo=UTC)) == "2026-12-01"
