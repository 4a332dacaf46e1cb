"""A hospital site, independent of Flower: its settings, data, size release and rounds.

The Flower ClientApp only unpacks a message, calls :func:`train_round` or
:func:`evaluate_round`, and packs the reply. One module per concern:

* :mod:`.config`: :class:`SiteConfig`, the site's own settings and its TOML schema.
* :mod:`.data`: reading and caching the site's records (plus the audited site's canaries).
* :mod:`.release`: :class:`SizeRelease`, the one charged DP release of the site's size.
* :mod:`.randomness`: secret DP randomness and the budget-derived noise multiplier.
* :mod:`.rounds`: :func:`train_round`, :func:`evaluate_round`, :func:`patient_feasibility`,
  :func:`site_device`.
"""

from medgan_core.site.config import INSECURE_SEED_VARIABLE, SiteConfig
from medgan_core.site.data import load_site_data, training_records
from medgan_core.site.release import PATIENT_RELEASE_FILE, SIZE_RELEASE_FILE, SizeRelease
from medgan_core.site.rounds import NonPrivateRefused, evaluate_round, patient_feasibility, site_device, train_round

__all__ = [
    "INSECURE_SEED_VARIABLE",
    "NonPrivateRefused",
    "PATIENT_RELEASE_FILE",
    "SIZE_RELEASE_FILE",
    "SiteConfig",
    "SizeRelease",
    "evaluate_round",
    "load_site_data",
    "patient_feasibility",
    "site_device",
    "train_round",
    "training_records",
]
