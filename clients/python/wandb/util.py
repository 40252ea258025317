"""`wandb.util`: the helpers training scripts call."""

import random
import string


def generate_id(length=8):
    """A random run id of lower-case letters and digits, as W&B makes them."""
    chars = string.ascii_lowercase + string.digits
    return "".join(random.SystemRandom().choice(chars) for _ in range(length))
