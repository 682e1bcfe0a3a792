"""The four standard screening views and their sides."""

from __future__ import annotations

from enum import Enum


class Side(str, Enum):
    LEFT = "left"
    RIGHT = "right"

    @property
    def letter(self) -> str:
        return "L" if self is Side.LEFT else "R"


class Angle(str, Enum):
    CC = "CC"
    MLO = "MLO"


class View(str, Enum):
    """A screening view. Iteration order is the authors' VIEWS order."""

    L_CC = "L-CC"
    R_CC = "R-CC"
    L_MLO = "L-MLO"
    R_MLO = "R-MLO"

    @property
    def side(self) -> Side:
        return Side.LEFT if self.value.startswith("L") else Side.RIGHT

    @property
    def angle(self) -> Angle:
        return Angle.CC if self.value.endswith("CC") else Angle.MLO

    @property
    def compact(self) -> str:
        """`lcc`, `rmlo` ...: the suffix of the image-wise model's head names."""
        return self.value.replace("-", "").lower()

    @classmethod
    def of(cls, side: Side, angle: Angle) -> View:
        return cls(f"{side.letter}-{angle.value}")

    def __str__(self) -> str:
        return self.value


VIEWS: tuple[View, ...] = (View.L_CC, View.R_CC, View.L_MLO, View.R_MLO)

# The authors' label order: CSV columns and rows of the view-wise heads.
LABELS: tuple[str, ...] = ("left_benign", "right_benign", "left_malignant", "right_malignant")
