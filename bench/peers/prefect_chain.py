"""A chain of N no-op tasks as one Prefect flow, run against a Prefect server (PREFECT_API_URL)."""
import sys

from prefect import flow, task

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50


@task
def echo(x: int) -> int:
    return x


@flow
def chain() -> int:
    x = 0
    for i in range(N):
        x = echo(x)
    return x


if __name__ == "__main__":
    chain()
