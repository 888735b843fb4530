import numpy as np


def load(n):
	data = np.ones((n, n))
	return data


def make_list(n):
    return [0] * n


def main():
    a = load(1000)
    b = make_list(10_000)
    c = bytearray(2048)
    return a, b, c


if __name__ == "__main__":
    main()
