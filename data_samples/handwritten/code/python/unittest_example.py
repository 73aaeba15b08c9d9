import unittest


def normalize_name(name: str) -> str:
    """Collapse inner whitespace and title-case a person's name."""
    return " ".join(part.capitalize() for part in name.split())


class NormalizeNameTest(unittest.TestCase):
    def test_collapses_spaces(self):
        self.assertEqual(normalize_name("  ada   lovelace "), "Ada Lovelace")

    def test_keeps_single_word(self):
        self.assertEqual(normalize_name("TURING"), "Turing")

    def test_empty(self):
        self.assertEqual(normalize_name(""), "")


if __name__ == "__main__":
    unittest.main()
