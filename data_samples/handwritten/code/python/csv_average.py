import csv
import io

DATA = """name,score
alice,88
bob,92
carol,79
"""


def average_score(fh) -> float:
    reader = csv.DictReader(fh)
    scores = [float(row["score"]) for row in reader]
    if not scores:
        raise ValueError("no rows")
    return sum(scores) / len(scores)


print(round(average_score(io.StringIO(DATA)), 2))  # 86.33
