"""Login, logout and the home page."""

from django.contrib.auth import views as auth_views
from django.shortcuts import redirect

from .models import AuditLog
from .services import audit_record


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        audit_record(actor=form.get_user(), action=AuditLog.Action.LOGIN, target_type="session", channel="web")
        return response


def home(request):
    if not request.user.is_authenticated:
        return redirect("login")
    if request.user.is_patient:
        # Patients use the phone-first follow-up pages: their reports, studies, plan and conversations.
        return redirect("followup:me")
    return redirect("annotation:study-list")
