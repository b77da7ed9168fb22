"""privcity: privacy for smart-city IoT, fast enough to use everywhere.

AES-256-GCM on AES-NI/VAES (``privcity.crypto``), with the C++ kernels picked at run time for
the CPU at hand. See ``privcity.backend_info()`` for what this process uses.
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._dispatch import aes_implementations as aes_implementations
from ._dispatch import backend_info as backend_info
from ._dispatch import cpu_features as cpu_features
from .errors import AuthenticationError as AuthenticationError
from .errors import CertificateError as CertificateError
from .errors import EnvelopeError as EnvelopeError
from .errors import InvalidUpdate as InvalidUpdate
from .errors import ModelFileError as ModelFileError
from .errors import PrivacyBudgetExceeded as PrivacyBudgetExceeded
from .errors import PrivcityError as PrivcityError
from .errors import SecureAggregationError as SecureAggregationError

__all__ = [
    "__version__",
    "AuthenticationError",
    "CertificateError",
    "EnvelopeError",
    "InvalidUpdate",
    "ModelFileError",
    "PrivacyBudgetExceeded",
    "PrivcityError",
    "SecureAggregationError",
    "aes_implementations",
    "backend_info",
    "cpu_features",
]
