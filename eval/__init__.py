"""Attribution evaluation: ALCE citation metrics, RARR metrics, saliency. Built in issue 4."""
