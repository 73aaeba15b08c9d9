def c_to_f(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def f_to_c(fahrenheit: float) -> float:
    return (fahrenheit - 32) * 5 / 9


for c in (-40, 0, 37, 100):
    print(f"{c:>5} °C = {c_to_f(c):6.1f} °F")
assert round(f_to_c(212), 6) == 100
