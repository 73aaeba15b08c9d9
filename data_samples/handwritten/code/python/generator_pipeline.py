def read_numbers(lines):
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            yield float(line)


def running_mean(values):
    total = 0.0
    for n, v in enumerate(values, 1):
        total += v
        yield total / n


data = ["# readings", "10", "12", "", "14", "8"]
print([round(m, 2) for m in running_mean(read_numbers(data))])  # [10.0, 11.0, 12.0, 11.0]
