# Battery voltage through a resistor divider into an ADC pin, and a rough state of charge for one Li-ion cell.

# Open-circuit voltage of a Li-ion / LiPo cell against charge, coarse: under load the voltage reads lower, and
# curves differ between cells. A hint for the dashboard, not a fuel gauge.
LIION = (
    (4.20, 100),
    (4.10, 90),
    (4.00, 79),
    (3.90, 66),
    (3.80, 52),
    (3.70, 35),
    (3.60, 18),
    (3.50, 8),
    (3.30, 2),
    (3.00, 0),
)


def volts(adc, ratio, samples=8, vref=3.3):
    """Battery volts: the mean of `samples` ADC readings times the divider `ratio` ((R1 + R2) / R2). ESP32:
    ADC.read_uv() is calibrated against the chip's eFuse; other ports scale read_u16() by `vref`."""
    total = 0
    if hasattr(adc, "read_uv"):
        for _ in range(samples):
            total += adc.read_uv()
        return total / samples / 1000000 * ratio
    for _ in range(samples):
        total += adc.read_u16()
    return total / samples * vref / 65535 * ratio


def percent(v, curve=LIION):
    if v >= curve[0][0]:
        return curve[0][1]
    for i in range(1, len(curve)):
        hi_v, hi_p = curve[i - 1]
        lo_v, lo_p = curve[i]
        if v >= lo_v:
            return lo_p + (hi_p - lo_p) * (v - lo_v) / (hi_v - lo_v)
    return curve[-1][1]
