from django.urls import path

from shop import views

urlpatterns = [
    path("write", views.write),
    path("read/<int:order_id>", views.read),
    path("orders", views.orders),
    path("health", views.health),
]
