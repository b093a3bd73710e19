"""Placeholder demo until the full chain lands: reads the shared E2E data end to end."""

from solo.paths import shared_data_dir


def main() -> None:
    print(f"shared data: {shared_data_dir()}")


if __name__ == "__main__":
    main()
