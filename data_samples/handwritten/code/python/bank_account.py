class InsufficientFunds(Exception):
    pass


class Account:
    """简单的银行账户：存款、取款、查询余额，余额不足时抛出异常。"""

    def __init__(self, owner: str, balance: float = 0.0):
        self.owner = owner
        self.balance = balance
        self.history: list[tuple[str, float]] = []

    def deposit(self, amount: float) -> None:
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.balance += amount
        self.history.append(("deposit", amount))

    def withdraw(self, amount: float) -> None:
        if amount > self.balance:
            raise InsufficientFunds(f"{self.owner}: balance {self.balance}, asked {amount}")
        self.balance -= amount
        self.history.append(("withdraw", amount))


acct = Account("王芳", 100)
acct.deposit(50)
acct.withdraw(30)
print(acct.balance, acct.history)
