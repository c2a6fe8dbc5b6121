"""A user's weighting for LD-Align: weights from the rank of each pair's latent distance, not its size (robust to a
few degenerate answers with huge distances). The workflow scales them to mean 1 within ld_align.weights.clip."""


def rank_weights(distances: list[float], settings: dict, seed: int) -> list[float]:
    order = sorted(range(len(distances)), key=lambda i: distances[i])
    ranks = [0.0] * len(distances)
    for r, i in enumerate(order):
        ranks[i] = 0.5 + r  # the closest pair still trains a little
    return ranks
