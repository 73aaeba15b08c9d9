from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0


@dataclass
class Inventory:
    items: dict[str, Item] = field(default_factory=dict)

    def add(self, item: Item) -> None:
        if item.name in self.items:
            self.items[item.name].quantity += item.quantity
        else:
            self.items[item.name] = item

    def total_value(self) -> float:
        return sum(i.price * i.quantity for i in self.items.values())


inv = Inventory()
inv.add(Item("pencil", 0.5, 40))
inv.add(Item("notebook", 2.0, 10))
inv.add(Item("pencil", 0.5, 10))
print(inv.total_value())  # 45.0
