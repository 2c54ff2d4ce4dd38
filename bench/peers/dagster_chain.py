"""A chain of N no-op ops as one Dagster job, executed in process (execute_in_process)."""
import sys

from dagster import job, op

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50


@op(name="s0")
def first() -> int:
    return 0


def make(i: int):
    @op(name=f"s{i}")
    def step(x: int) -> int:
        return x

    return step


ops = [make(i) for i in range(1, N)]


@job
def chain():
    x = first()
    for o in ops:
        x = o(x)


if __name__ == "__main__":
    result = chain.execute_in_process()
    sys.exit(0 if result.success else 1)
