import argparse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Greet someone a number of times.")
    parser.add_argument("name")
    parser.add_argument("-n", "--times", type=int, default=1, help="how many greetings")
    parser.add_argument("--shout", action="store_true", help="print in upper case")
    args = parser.parse_args(argv)
    message = f"Hello, {args.name}!"
    for _ in range(args.times):
        print(message.upper() if args.shout else message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(["Ada", "-n", "2"]))
