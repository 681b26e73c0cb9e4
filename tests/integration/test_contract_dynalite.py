"""The service test suites, run again against a real dynalite: the same contract as on moto.

The imported test functions pick up this directory's ``tables``/``container`` fixtures (dynalite)."""

from tests.unit.test_artifact_service import *  # noqa: F403
from tests.unit.test_image_management import *  # noqa: F403
from tests.unit.test_tags_service import *  # noqa: F403
