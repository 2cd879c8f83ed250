"""SQLAlchemy models shared by the portal and the redirector."""

from affiliate.models.accounts import (
    STAFF_ROLES,
    LoginAttempt,
    PayoutMethod,
    Role,
    User,
    UserSession,
    UserStatus,
)
from affiliate.models.conversions import Conversion, ConversionStatus, ConversionType
from affiliate.models.money import (
    AuditLog,
    BatchStatus,
    Commission,
    CommissionKind,
    CommissionStatus,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutBatch,
    PayoutExport,
    PayoutStatus,
)
from affiliate.models.programs import (
    ApiKey,
    AttributionModel,
    CommissionPlan,
    CommissionTier,
    FraudRule,
    Program,
    ProgramStatus,
)
from affiliate.models.rollups import ClickRollup, CommissionRollup, ConversionRollup, RollupState
from affiliate.models.tracking import Click, Link, Referral
from affiliate.models.types import UTCDateTime, utcnow

__all__ = [
    "STAFF_ROLES",
    "ApiKey",
    "AttributionModel",
    "AuditLog",
    "BatchStatus",
    "Click",
    "ClickRollup",
    "Commission",
    "CommissionKind",
    "CommissionPlan",
    "CommissionRollup",
    "CommissionStatus",
    "CommissionTier",
    "Conversion",
    "ConversionRollup",
    "ConversionStatus",
    "ConversionType",
    "FraudRule",
    "LedgerEntry",
    "LedgerTransaction",
    "Link",
    "LoginAttempt",
    "Payout",
    "PayoutBatch",
    "PayoutExport",
    "PayoutMethod",
    "PayoutStatus",
    "Program",
    "ProgramStatus",
    "Referral",
    "Role",
    "RollupState",
    "UTCDateTime",
    "User",
    "UserSession",
    "UserStatus",
    "utcnow",
]
