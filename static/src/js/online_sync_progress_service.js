/** @odoo-module **/
// Progress of a long bank import, pushed over the bus by each background run: a notification
// for the user who asked, and the accounting dashboard reloads to show the new count.
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";

export const onlineSyncProgressService = {
    dependencies: ["bus_service", "notification", "action"],
    start(env, { bus_service, notification, action }) {
        bus_service.subscribe("account_online_sync/progress", (payload) => {
            const finished = payload.done >= payload.total;
            notification.add(
                finished
                    ? _t("%(journal)s: all %(total)s transactions are imported.", payload)
                    : _t("%(journal)s: %(done)s of %(total)s transactions imported…", payload),
                { type: finished ? "success" : "info" }
            );
            const controller = action.currentController;
            if (controller?.props?.resModel === "account.journal" && controller.view?.type === "kanban") {
                action.switchView("kanban");
            }
        });
    },
};

registry.category("services").add("account_online_sync_progress", onlineSyncProgressService);
