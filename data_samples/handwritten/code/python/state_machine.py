from enum import Enum


class Order(Enum):
    CREATED = "created"
    PAID = "paid"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


# 订单状态机：只允许表中列出的状态转换
ALLOWED = {
    Order.CREATED: {Order.PAID, Order.CANCELLED},
    Order.PAID: {Order.SHIPPED, Order.CANCELLED},
    Order.SHIPPED: set(),
    Order.CANCELLED: set(),
}


def advance(state: Order, new: Order) -> Order:
    if new not in ALLOWED[state]:
        raise ValueError(f"cannot go from {state.value} to {new.value}")
    return new


s = advance(Order.CREATED, Order.PAID)
s = advance(s, Order.SHIPPED)
print(s)  # Order.SHIPPED
