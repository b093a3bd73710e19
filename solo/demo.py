"""`python -m solo.demo` (`make demo`): the end-to-end CPU demo; see solo/experiments/demo.py."""

from solo.experiments.demo import main

if __name__ == "__main__":
    main()
