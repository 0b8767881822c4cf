"""A plain-language summary of a signed report for the patient, written from its measurements.
Imports no Django.

The summary restates what was measured in everyday words with familiar comparisons, and always ends by
sending the patient to their doctor for what it means: it explains, it does not diagnose.
"""

from __future__ import annotations

# A 330 mL can of drink and a 1.5 L bottle of water: familiar sizes for volumes in millilitres.
_CAN_ML = 330.0
_BOTTLE_ML = 1500.0


def _size_words(volume_ml: float) -> str:
    if volume_ml >= _BOTTLE_ML * 0.5:
        return f"约为 {volume_ml / _BOTTLE_ML:.1f} 瓶 1.5 升矿泉水的容量"
    if volume_ml >= _CAN_ML * 0.25:
        return f"约为 {volume_ml / _CAN_ML:.1f} 罐 330 毫升饮料的容量"
    if volume_ml >= 1.0:
        return f"约 {volume_ml:.1f} 毫升，比一汤匙（约 15 毫升）{'大' if volume_ml > 15 else '小'}"
    return f"不到 1 毫升（{volume_ml * 1000:.0f} 立方毫米）"


def _diameter_words(diameter_mm: float) -> str:
    if diameter_mm >= 10:
        return f"最长处约 {diameter_mm / 10:.1f} 厘米"
    return f"最长处约 {diameter_mm:.1f} 毫米"


def report_summary(content: dict) -> list[str]:
    """Return the summary as a list of short Chinese paragraphs.

    Parameters
    ----------
    content : dict
        A report's structured content (``diagnosis.services.report_content``): ``study`` (with
        ``study_date``), ``measurements`` (each with ``name``, ``name_zh``, ``volume_ml``,
        ``max_diameter_mm`` in mm and ``component_count``) and ``impression``.

    Returns
    -------
    list of str
        One paragraph for the examination, one per measured structure, the doctor's impression
        quoted as written, and the closing advice. Volumes are in mL (1 mL = 1000 mm³).
    """
    paragraphs = []
    study = content.get("study") or {}
    series = content.get("series") or {}
    modality = series.get("modality") or ""
    when = study.get("study_date")
    exam = {"CT": "CT（计算机断层扫描）", "MR": "磁共振（MRI）"}.get(modality.upper(), modality or "影像")
    paragraphs.append(f"这份报告说明了您{f'在 {when} ' if when else ''}所做的{exam}检查。"
                      "电脑程序先在三维图像上勾画出需要测量的结构，医生审核后签发了报告。")
    for m in content.get("measurements") or []:
        name = m.get("name_zh") or m.get("name") or "该结构"
        volume = float(m.get("volume_ml") or 0.0)
        diameter = float(m.get("max_diameter_mm") or 0.0)
        parts = int(m.get("component_count") or 0)
        sentence = f"{name}：体积 {volume:.1f} 毫升，{_size_words(volume)}；{_diameter_words(diameter)}"
        if parts > 1:
            sentence += f"；图像上分成 {parts} 个互不相连的部分"
        paragraphs.append(sentence + "。")
    impression = (content.get("impression") or "").strip()
    if impression:
        paragraphs.append(f"医生的结论是：“{impression}”")
    paragraphs.append("这些数字本身不代表病情好坏。它们的意义要结合您的症状和以往检查来判断，"
                      "请在复诊时或通过“我的对话”向您的医生询问。")
    return paragraphs
