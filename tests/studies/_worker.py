"""A worker process for the engine tests: runs fake items that sleep and log their runs."""

import sys
import time

from lfubench.studies.engine import Engine, EngineConfig


def main() -> None:
    storage, n_items, sleep_s, log_path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    items = [f"item{k}" for k in range(n_items)]

    def run_item(item: str) -> dict:
        with open(log_path, "a") as f:
            f.write(f"start {item}\n")
        time.sleep(sleep_s)
        if item == "item3" and "fail3" in sys.argv:
            raise RuntimeError("planted failure: unreadable case volume-3.nii")
        with open(log_path, "a") as f:
            f.write(f"done {item}\n")
        return {"value": int(item[4:]) / 10, "finished_at": time.time()}

    engine = Engine(storage, "test", items, EngineConfig(heartbeat_s=0.2, grace_s=1.5))
    print(engine.run(run_item))


if __name__ == "__main__":
    main()
