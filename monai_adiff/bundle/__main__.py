# SPDX-License-Identifier: Apache-2.0
"""``python -m monai_adiff.bundle [--check] [BUNDLE_DIR ...]``: regenerate (or check) bundles from their fragments."""

import sys

from monai_adiff.bundle.compose import main

sys.exit(main())
