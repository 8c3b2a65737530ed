"""Vietnamese words the console shows for states, roles and statuses (staff read them)."""

from __future__ import annotations

from typing import Final

KIOSK_STATES: Final = {
    "operational": "Hoạt động tốt",
    "degraded": "Có sự cố",
    "updating": "Đang cập nhật",
    "offline": "Mất kết nối",
    "never-seen": "Chưa từng kết nối",
    "inconsistent": "Lỗi cập nhật",
    "revoked": "Đã thu hồi",
}

ROLES: Final = {"admin": "Quản trị", "staff": "Cán bộ", "viewer": "Chỉ xem"}

SUPPORT_STATUSES: Final = {
    "pending": "Chờ xử lý",
    "queued": "Trong hàng đợi",
    "assigned": "Đã giao",
    "no-one-on-duty": "Không có người trực",
    "acknowledged": "Đang xử lý",
    "resolved": "Đã xong",
}

SUPPORT_TYPES: Final = {"help": "Hỗ trợ tại chỗ", "home-visit": "Hỗ trợ tại nhà"}

INQUIRY_CATEGORIES: Final = {
    "question": "Câu hỏi",
    "petition": "Kiến nghị",
    "feedback": "Góp ý",
}

RATING_LEVELS: Final = {
    "rat_hai_long": "Rất hài lòng",
    "hai_long": "Hài lòng",
    "khong_hai_long": "Không hài lòng",
}


def label(table: dict[str, str], key: object) -> str:
    """The Vietnamese word for ``key``, or the key itself when there is none."""
    return table.get(str(key), str(key))


ALERT_STATES: Final = {"open": "Đang mở", "acknowledged": "Đã xác nhận", "cleared": "Đã hết"}

SEVERITIES: Final = {"critical": "Nghiêm trọng", "warning": "Cảnh báo", "info": "Thông tin"}

JOB_KINDS: Final = {
    "print-test-slip": "In phiếu thử",
    "resync-catalogue": "Đồng bộ lại danh mục thủ tục",
    "selftest": "Tự kiểm tra",
    "collect-diagnostics": "Thu thập thông tin chẩn đoán",
    "restart-agent": "Khởi động lại phần mềm ki-ốt",
    "purge-synced": "Xoá dữ liệu đã đồng bộ",
    "update": "Cập nhật phần mềm",
}

JOB_STATES: Final = {
    "queued": "Đang chờ",
    "in-progress": "Đang chạy",
    "succeeded": "Thành công",
    "failed": "Thất bại",
    "rejected": "Bị từ chối",
    "timed-out": "Quá hạn",
    "cancelled": "Đã huỷ",
}
